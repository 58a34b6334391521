//! `S3Store` keeps the `BackingStore` contract on a real S3 server.

use super::common::s3::{BUCKET, S3Server, free_port};
use lsvfs::store::contract::contract;
use lsvfs::store::{BackingStore, PART_SIZE, S3Store, StoreError};
use std::time::{Duration, Instant};

#[test]
fn s3_store_keeps_the_contract() {
    let server = S3Server::start();
    contract(&server.store("vol/archive"));
    // Under the bucket's root too, beside (not inside) another prefix.
    contract(&server.store(""));
}

#[test]
fn a_listing_goes_past_one_page_of_1000_objects() {
    let server = S3Server::start();
    let store = server.store("many");
    let names: Vec<String> = (0..1100).map(|i| format!("{i:016}.lsa")).collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(names.len() / 4 + 1) {
            let store = &store;
            scope.spawn(move || {
                for name in chunk {
                    store.put(name, name.as_bytes()).unwrap();
                }
            });
        }
    });
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1100);
    let want: Vec<(String, u64)> = names.iter().map(|n| (n.clone(), 20)).collect();
    assert!(listed == want, "every object once, sorted, with its size");
}

#[test]
fn an_object_larger_than_a_part_goes_up_whole_and_is_never_replaced() {
    let server = S3Server::start();
    let store = server.store("big");
    let len = 2 * PART_SIZE + 12345;
    let big: Vec<u8> = (0..len as u64).map(|i| (i * 7 % 253) as u8).collect();
    store.put("0000000000000001.lsa", &big).unwrap();
    assert_eq!(store.get("0000000000000001.lsa").unwrap(), big);
    assert_eq!(store.size("0000000000000001.lsa").unwrap(), len as u64);
    let across = PART_SIZE as u64 - 10;
    assert_eq!(
        store.get_range("0000000000000001.lsa", across, 20).unwrap(),
        &big[across as usize..across as usize + 20]
    );
    // A second put of the name, multipart or not, is refused.
    let other = vec![1u8; len];
    let e = store.put("0000000000000001.lsa", &other).unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    let e = store.put("0000000000000001.lsa", b"small").unwrap_err();
    assert!(matches!(e, StoreError::Exists { .. }), "{e}");
    assert_eq!(store.get("0000000000000001.lsa").unwrap(), big);
    // Only the object is listed, and its staging copies are gone.
    assert_eq!(
        store.list().unwrap(),
        vec![("0000000000000001.lsa".to_string(), len as u64)]
    );
    assert!(server.store("big/.staging").list().unwrap().is_empty());
}

#[test]
fn an_existing_name_is_refused_also_when_written_concurrently() {
    let server = S3Server::start();
    let store = server.store("race");
    let won: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4u8)
            .map(|i| {
                let store = &store;
                scope.spawn(move || match store.put("x.lsa", &[i; 100]) {
                    Ok(()) => true,
                    Err(StoreError::Exists { .. }) => false,
                    Err(e) => panic!("{e}"),
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap() as u8;
    assert_eq!(store.get("x.lsa").unwrap(), vec![winner; 100]);
}

/// Every operation of `store` fails with `want`, in one line naming the
/// store's URL and the object.
fn each_operation_fails(store: &S3Store, want: fn(&StoreError) -> bool, words: &str) {
    let errors = [
        store.put("a.lsa", b"x").unwrap_err(),
        store.put("b.lsa", &vec![0; PART_SIZE + 1]).unwrap_err(),
        store.get("a.lsa").unwrap_err(),
        store.get_range("a.lsa", 0, 1).unwrap_err(),
        store.size("a.lsa").unwrap_err(),
        store.delete("a.lsa").unwrap_err(),
        store.list().unwrap_err(),
    ];
    for e in errors {
        let line = e.to_string();
        assert!(want(&e), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&store.describe()), "{line}");
        assert!(line.contains(words), "{line}");
        eprintln!("{line}");
    }
}

#[test]
fn an_unreachable_endpoint_is_one_clear_line() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "k"),
        ("aws_secret_access_key", "s"),
        ("aws_region", "us-east-1"),
    ];
    let store = S3Store::open_with(BUCKET, "p", &config).unwrap();
    let start = Instant::now();
    each_operation_fails(
        &store,
        |e| matches!(e, StoreError::Unreachable { .. }),
        &format!("endpoint {endpoint} is unreachable"),
    );
    let e = store.get("0000000000000001.lsa").unwrap_err().to_string();
    assert!(e.contains("get 0000000000000001.lsa"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "retries are bounded"
    );
}

#[test]
fn a_missing_bucket_is_one_clear_line() {
    let server = S3Server::start();
    let store = server.store_in("no-such-bucket", "p");
    each_operation_fails(
        &store,
        |e| matches!(e, StoreError::NoBucket { .. }),
        "bucket no-such-bucket does not exist",
    );
}

#[test]
fn wrong_credentials_are_one_clear_line() {
    let server = S3Server::start_checking_credentials();
    let store = server.store("p");
    each_operation_fails(
        &store,
        |e| matches!(e, StoreError::Denied { .. }),
        "access denied",
    );
    let e = store.get("a.lsa").unwrap_err().to_string();
    assert!(e.contains("InvalidAccessKeyId"), "{e}");
}
