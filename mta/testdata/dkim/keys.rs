// Included by the MTA's unit tests (`include!`): the test keys of this folder as
// (selector, algorithm, PKCS#8 base64, `p=` value). See README.md.
const TEST_KEYS: [(&str, way2mail_wire::protocol::DkimAlgorithm, &str, &str); 2] = [
    (
        "w2m-test-rsa",
        way2mail_wire::protocol::DkimAlgorithm::RsaSha256,
        include_str!("rsa.pkcs8.b64"),
        include_str!("rsa.public.b64"),
    ),
    (
        "w2m-test-ed",
        way2mail_wire::protocol::DkimAlgorithm::Ed25519Sha256,
        include_str!("ed25519.pkcs8.b64"),
        include_str!("ed25519.public.b64"),
    ),
];
