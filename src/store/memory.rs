//! A backing store in memory, for tests and benchmarks.

use super::{BackingStore, StoreError, check_name, range};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Memory {
    objects: Mutex<BTreeMap<String, Arc<Vec<u8>>>>,
}

impl Memory {
    pub fn new() -> Self {
        Self::default()
    }

    fn object(&self, name: &str) -> Result<Arc<Vec<u8>>, StoreError> {
        crate::sync::lock(&self.objects)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                store: self.describe(),
                name: name.to_string(),
            })
    }
}

impl BackingStore for Memory {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        check_name(name)?;
        let mut objects = crate::sync::lock(&self.objects);
        if objects.contains_key(name) {
            return Err(StoreError::Exists {
                store: self.describe(),
                name: name.to_string(),
            });
        }
        objects.insert(name.to_string(), Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.object(name)?.to_vec())
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        range(self, name, &self.object(name)?, offset, len)
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.object(name)?.len() as u64)
    }

    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(crate::sync::lock(&self.objects)
            .iter()
            .map(|(n, b)| (n.clone(), b.len() as u64))
            .collect())
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        crate::sync::lock(&self.objects).remove(name);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}
