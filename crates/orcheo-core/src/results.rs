//! The outputs of finished nodes (`results.<node_id>`), kept so that a snapshot per superstep
//! costs a pointer copy: entries share their values, and the map is copied only when a
//! superstep changes it while a checkpoint still holds the old one.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Node outputs by node id, in the order the nodes finished.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results(Arc<IndexMap<Arc<str>, Arc<Value>>>);

impl Results {
    /// The output of a node.
    pub fn get(&self, node: &str) -> Option<&Value> {
        self.0.get(node).map(|v| &**v)
    }
    /// The shared output of a node.
    pub fn get_shared(&self, node: &str) -> Option<&Arc<Value>> {
        self.0.get(node)
    }
    /// Records (or replaces) a node's output.
    pub fn insert(&mut self, node: Arc<str>, output: Arc<Value>) {
        Arc::make_mut(&mut self.0).insert(node, output);
    }
    /// How many nodes have an output.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when no node has finished.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Node ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.keys()
    }
    /// The outputs as one JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.to_string(), (**v).clone()))
                .collect::<Map<String, Value>>(),
        )
    }
}

impl Serialize for Results {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Results {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Results(Arc::new(
            IndexMap::<Arc<str>, Arc<Value>>::deserialize(d)?,
        )))
    }
}
