/*
 * Counts the bytes a process copies in user space: an LD_PRELOAD library that
 * stands in front of libc's memcpy and memmove, adds each call's length to
 * counters, and calls the real function. The counters live in a small file
 * mapped shared (COPYCOUNT_FILE), so a script reads them while the process runs:
 * before a load and after it, the difference is what that load copied.
 *
 * File layout: four little-endian u64: calls, bytes, calls of 4 KiB or more,
 * bytes of those calls. bench/copies.sh builds and reads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef void *(*copy_fn)(void *, const void *, size_t);

static copy_fn real_memcpy;
static copy_fn real_memmove;
static volatile uint64_t *counters;

#define LARGE 4096

__attribute__((constructor)) static void copycount_init(void) {
    real_memcpy = (copy_fn)dlsym(RTLD_NEXT, "memcpy");
    real_memmove = (copy_fn)dlsym(RTLD_NEXT, "memmove");
    const char *path = getenv("COPYCOUNT_FILE");
    if (path == NULL) return;
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return;
    if (ftruncate(fd, 4 * sizeof(uint64_t)) == 0) {
        void *p = mmap(NULL, 4 * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) counters = p;
    }
    close(fd);
}

static inline void count(size_t n) {
    volatile uint64_t *c = counters;
    if (c == NULL) return;
    __atomic_fetch_add(&c[0], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c[1], n, __ATOMIC_RELAXED);
    if (n >= LARGE) {
        __atomic_fetch_add(&c[2], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&c[3], n, __ATOMIC_RELAXED);
    }
}

/* Before the constructor has run (the dynamic loader itself may copy), a byte
 * loop that the compiler is told not to turn back into a call to memcpy. */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static void *slow_move(void *d, const void *s, size_t n) {
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp < sp) {
        for (size_t i = 0; i < n; i++) dp[i] = sp[i];
    } else {
        for (size_t i = n; i > 0; i--) dp[i - 1] = sp[i - 1];
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n) {
    count(n);
    return real_memcpy ? real_memcpy(d, s, n) : slow_move(d, s, n);
}

void *memmove(void *d, const void *s, size_t n) {
    count(n);
    return real_memmove ? real_memmove(d, s, n) : slow_move(d, s, n);
}
