//! The one-time migration of a control store written before data keys existed: its
//! values were sealed with the master key itself, and domain names were sled keys.
//! Every such value is opened with the master key and sealed again under a data
//! key (a tenant's records under the tenant's, the rest under the node's); domain
//! and DKIM key records move to their blind-index keys. Tree by tree, each in one
//! sled batch, so a crash leaves every record either old or new; the next start
//! finishes the job. The marker `meta/store_format = 2` then skips the scan.

use std::collections::HashMap;

use serde_json::Value;

use super::{aad, Store, TreeName};
use crate::error::Error;

const FORMAT_KEY: &[u8] = b"store_format";
const FORMAT: u32 = 2;

/// A value of the old format, opened: its JSON (`{"v":1,"data":…}`).
fn open_legacy(store: &Store, tree: TreeName, key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let fresh = way2mail_seal::key_id_of(value)
        .is_some_and(|id| !matches!(store.keyring.lookup(id), way2mail_seal::Lookup::Unknown));
    if fresh {
        return None;
    }
    store
        .keyring
        .open_with_master(&aad(tree, key), value.to_vec())
        .ok()
}

/// The JSON of any record of `tree` (new format or old), for reading owners.
fn json_of(store: &Store, tree: TreeName, key: &[u8], value: &[u8]) -> Option<Value> {
    let json = match open_legacy(store, tree, key, value) {
        Some(json) => json,
        None => store.keyring.open_record(&aad(tree, key), value).ok()?,
    };
    serde_json::from_slice::<Value>(&json).ok()
}

fn field(json: &Value, name: &str) -> Option<String> {
    json.get("data")?.get(name)?.as_str().map(str::to_owned)
}

pub(super) fn run(store: &Store) -> Result<(), Error> {
    if store.get::<u32>(TreeName::Meta, FORMAT_KEY).ok().flatten() == Some(FORMAT) {
        return Ok(());
    }
    let mut migrated = 0usize;
    // Domain owners first: DKIM key records name only their domain.
    let mut owners: HashMap<String, String> = HashMap::new();
    for item in store.tree(TreeName::Domains).iter() {
        let (k, v) = item?;
        if let Some(json) = json_of(store, TreeName::Domains, &k, &v) {
            if let (Some(domain), Some(tenant)) = (field(&json, "domain"), field(&json, "tenant")) {
                owners.insert(domain, tenant);
            }
        }
    }
    for tree in TreeName::ALL {
        let mut batch = sled::Batch::default();
        let mut changed = 0;
        for item in store.tree(tree).iter() {
            let (k, v) = item?;
            let Some(json) = open_legacy(store, tree, &k, &v) else {
                continue;
            };
            let parsed: Option<Value> = serde_json::from_slice(&json).ok();
            let (owner, new_key) = match tree {
                TreeName::Tenants => (Some(String::from_utf8_lossy(&k).into_owned()), k.to_vec()),
                TreeName::Domains => {
                    let domain = parsed.as_ref().and_then(|j| field(j, "domain"));
                    let tenant = parsed.as_ref().and_then(|j| field(j, "tenant"));
                    match domain {
                        Some(d) => (tenant, store.domain_key(&d)),
                        None => (tenant, k.to_vec()),
                    }
                }
                TreeName::Credentials => {
                    (parsed.as_ref().and_then(|j| field(j, "tenant")), k.to_vec())
                }
                TreeName::DkimKeys => {
                    let text = String::from_utf8_lossy(&k).into_owned();
                    let Some((domain, selector)) = text.split_once('\0') else {
                        continue;
                    };
                    match owners.get(domain) {
                        Some(t) => (Some(t.clone()), store.dkim_key(domain, selector)),
                        None => {
                            // A private key whose domain is gone: nothing may sign with it.
                            tracing::warn!(
                                domain,
                                selector,
                                "dropping a DKIM key without its domain"
                            );
                            batch.remove(k.to_vec());
                            changed += 1;
                            continue;
                        }
                    }
                }
                _ => (None, k.to_vec()),
            };
            let data_key = match (tree.is_tenant_owned(), owner) {
                (true, Some(t)) => store.keyring.tenant(&t).map_err(Error::Key)?,
                (true, None) => {
                    tracing::warn!(
                        tree = tree.as_str(),
                        "a record without its tenant is left as it was"
                    );
                    continue;
                }
                (false, _) => store.keyring.system(),
            };
            let sealed = store.seal_with(&data_key, tree, &new_key, json)?;
            if new_key.as_slice() != k.as_ref() {
                batch.remove(k.to_vec());
            }
            batch.insert(new_key, sealed);
            changed += 1;
        }
        if changed > 0 {
            store.tree(tree).apply_batch(batch)?;
            migrated += changed;
        }
    }
    let mut marker = super::Batch::new();
    marker.put(TreeName::Meta, FORMAT_KEY, &FORMAT)?;
    store.commit(marker)?;
    if migrated > 0 {
        tracing::warn!(
            migrated,
            "control store records sealed again under data keys"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreFiles;
    use way2mail_seal::MasterKey;

    /// Writes `data` as the version before data keys did.
    fn legacy(db: &sled::Db, master: &MasterKey, tree: TreeName, key: &[u8], data: Value) {
        let json = serde_json::to_vec(&serde_json::json!({"v":1,"data":data})).expect("json");
        let sealed = master.seal(&aad(tree, key), json).expect("seal");
        db.open_tree(tree.as_str())
            .expect("tree")
            .insert(key, sealed)
            .expect("insert");
    }

    #[test]
    fn an_old_store_is_resealed_under_data_keys_and_blind_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = StoreFiles::in_dir(dir.path());
        let master = MasterKey::load_or_create(&files.key_file).expect("master");
        {
            let db = sled::open(&files.dir).expect("sled");
            legacy(
                &db,
                &master,
                TreeName::Tenants,
                b"acme",
                serde_json::json!({"tenant":"acme"}),
            );
            legacy(
                &db,
                &master,
                TreeName::Domains,
                b"acme.example",
                serde_json::json!({"domain":"acme.example","tenant":"acme"}),
            );
            legacy(
                &db,
                &master,
                TreeName::DkimKeys,
                b"acme.example\0sel",
                serde_json::json!({"domain":"acme.example","selector":"sel"}),
            );
            legacy(
                &db,
                &master,
                TreeName::Credentials,
                b"cr_1",
                serde_json::json!({"tenant":"acme","username":"u"}),
            );
            legacy(
                &db,
                &master,
                TreeName::Operators,
                b"alice",
                serde_json::json!({"name":"alice"}),
            );
            db.flush().expect("flush");
        }
        let store = Store::open(&files).expect("open migrates");
        let acme = store.keyring().existing("acme").expect("acme key").id();
        let system = store.keyring().system().id();
        let header = |tree: TreeName, key: &[u8]| {
            way2mail_seal::key_id_of(&store.tree(tree).get(key).expect("get").expect("present"))
        };
        assert_eq!(header(TreeName::Tenants, b"acme"), Some(acme));
        assert_eq!(
            header(TreeName::Domains, &store.domain_key("acme.example")),
            Some(acme)
        );
        assert!(store
            .tree(TreeName::Domains)
            .get(b"acme.example")
            .expect("get")
            .is_none());
        assert_eq!(
            header(TreeName::DkimKeys, &store.dkim_key("acme.example", "sel")),
            Some(acme)
        );
        assert_eq!(header(TreeName::Credentials, b"cr_1"), Some(acme));
        assert_eq!(header(TreeName::Operators, b"alice"), Some(system));
        let d: Value = store
            .get(TreeName::Domains, &store.domain_key("acme.example"))
            .expect("read")
            .expect("present");
        assert_eq!(d["tenant"], "acme");
        drop(store);
        // Reopening finds the marker and changes nothing.
        let store = Store::open(&files).expect("reopen");
        assert_eq!(
            store
                .get::<u32>(TreeName::Meta, FORMAT_KEY)
                .expect("marker"),
            Some(FORMAT)
        );
    }
}
