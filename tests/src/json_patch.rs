//! The JSON patch (RFC 6902) operations the fake API server applies: `test`, `add`,
//! `replace` and `remove` on JSON pointers, which is what the updater sends.

use serde_json::Value;

pub fn apply(document: &mut Value, operation: &Value) -> Result<(), String> {
    let op = operation["op"].as_str().ok_or("an operation without op")?;
    let path = operation["path"]
        .as_str()
        .ok_or("an operation without path")?;
    let value = operation.get("value").cloned();
    if op == "test" {
        let found = document.pointer(path);
        return if found.is_some() && found == value.as_ref() {
            Ok(())
        } else {
            Err(format!("the test of {path} failed: it is {found:?}"))
        };
    }
    let (parent_path, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("bad path {path}"))?;
    let key = last.replace("~1", "/").replace("~0", "~");
    let parent = document
        .pointer_mut(parent_path)
        .ok_or_else(|| format!("{parent_path} does not exist"))?;
    match (op, parent) {
        ("add" | "replace", Value::Object(map)) => {
            if op == "replace" && !map.contains_key(&key) {
                return Err(format!("{path} does not exist"));
            }
            map.insert(key, value.ok_or("add without value")?);
        }
        ("replace", Value::Array(items)) => {
            let index: usize = key.parse().map_err(|_| format!("bad index in {path}"))?;
            let slot = items
                .get_mut(index)
                .ok_or_else(|| format!("{path} does not exist"))?;
            *slot = value.ok_or("replace without value")?;
        }
        ("remove", Value::Object(map)) => {
            map.remove(&key)
                .ok_or_else(|| format!("{path} does not exist"))?;
        }
        _ => return Err(format!("the fake server does not support {op} on {path}")),
    }
    Ok(())
}
