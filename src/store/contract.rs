//! The contract every backing store keeps, as one test run against each
//! implementation: the inline tests run it on `LocalDir`, `Memory` and
//! `Faulty`, `tests/s3/` on `S3Store` against a real S3 server. Public
//! (hidden) so that integration tests can call it; it panics on a breach.

use super::{BackingStore, StoreError};

/// Checks `s`, which must be empty, against the trait's contract; panics
/// naming the first breach. Leaves two objects, `b.lsa` and `big`.
pub fn contract(s: &dyn BackingStore) {
    assert!(s.list().unwrap().is_empty());
    s.put("b.lsa", b"hello world").unwrap();
    s.put("a.lsa", b"").unwrap();
    assert_eq!(s.get("b.lsa").unwrap(), b"hello world");
    assert_eq!(s.get("a.lsa").unwrap(), b"");
    assert_eq!(s.size("b.lsa").unwrap(), 11);
    assert_eq!(s.get_range("b.lsa", 6, 5).unwrap(), b"world");
    assert_eq!(s.get_range("b.lsa", 11, 0).unwrap(), b"");
    for (off, len) in [(6, 6), (12, 0), (u64::MAX, 2)] {
        let e = s.get_range("b.lsa", off, len).unwrap_err();
        assert!(matches!(e, StoreError::Range { .. }), "{e}");
    }
    let e = s.put("b.lsa", b"replaced").unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert_eq!(s.get("b.lsa").unwrap(), b"hello world");
    assert_eq!(
        s.list().unwrap(),
        vec![("a.lsa".to_string(), 0), ("b.lsa".to_string(), 11)]
    );
    for e in [
        s.get("nope").unwrap_err(),
        s.get_range("nope", 0, 1).unwrap_err(),
        s.size("nope").unwrap_err(),
    ] {
        assert!(e.is_not_found(), "{e}");
        assert!(e.to_string().contains("nope"), "{e}");
    }
    s.delete("a.lsa").unwrap();
    s.delete("a.lsa").unwrap();
    assert!(s.get("a.lsa").unwrap_err().is_not_found());
    let long = "x".repeat(201);
    for bad in ["", "a/b", "..", ".hidden", long.as_str()] {
        let e = s.put(bad, b"x").unwrap_err();
        assert!(matches!(e, StoreError::InvalidName(_)), "{bad:?}: {e}");
    }
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    s.put("big", &big).unwrap();
    assert_eq!(s.get("big").unwrap(), big);
    assert_eq!(
        s.get_range("big", 1 << 20, 7).unwrap(),
        &big[1 << 20..(1 << 20) + 7]
    );
    assert_eq!(s.list().unwrap().len(), 2);
}
