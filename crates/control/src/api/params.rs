//! An action's params as a JSON object, from a JSON body or from flattened form/query pairs, with typed accessors
//! that coerce the way the SDKs send values (brief §1.4).

use serde_json::{Map, Value};

use super::ApiError;

/// The params of one call.
#[derive(Debug, Clone, Default)]
pub struct Params(Map<String, Value>);

fn invalid_type(name: &str, what: &str) -> ApiError {
    ApiError::new("InvalidParameter", format!("The parameter `{name}` must be {what}."))
}

fn insert_path(obj: &mut Map<String, Value>, path: &[&str], value: String) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        obj.insert(first.to_string(), Value::String(value));
        return;
    }
    let child = obj.entry(first.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(m) = child {
        insert_path(m, rest, value);
    }
}

/// Turns objects whose keys are all indexes (`0`, `1`, ...) into arrays, recursively.
fn arrays_from_indexes(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let all_digits = !m.is_empty() && m.keys().all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
            if all_digits {
                let mut items: Vec<(usize, Value)> =
                    m.into_iter().map(|(k, v)| (k.parse().unwrap_or(usize::MAX), arrays_from_indexes(v))).collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(m.into_iter().map(|(k, v)| (k, arrays_from_indexes(v))).collect())
            }
        }
        other => other,
    }
}

impl Params {
    /// Params from a JSON body (`{}` when empty).
    pub fn from_json(body: &[u8]) -> Result<Params, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Params(m)),
            _ => Err(ApiError::new("InvalidParameter", "The request body is not a JSON object.")),
        }
    }

    /// Params from decoded form pairs; dotted keys (`A.0.B`) become nested objects and arrays.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        let mut root = Map::new();
        for (k, v) in pairs {
            let path: Vec<&str> = k.split('.').collect();
            insert_path(&mut root, &path, v);
        }
        match arrays_from_indexes(Value::Object(root)) {
            Value::Object(m) => Params(m),
            _ => Params::default(),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// An optional string; numbers are accepted as their text.
    pub fn str_opt(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(invalid_type(name, "a string")),
        }
    }

    /// A required string.
    pub fn str_req(&self, name: &str) -> Result<String, ApiError> {
        self.str_opt(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An optional integer; numeric strings are accepted.
    pub fn int_opt(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid_type(name, "an integer")),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid_type(name, "an integer")),
            Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
            Some(_) => Err(invalid_type(name, "an integer")),
        }
    }

    /// An optional list of strings.
    pub fn str_list_opt(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid_type(name, "a list of strings")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(invalid_type(name, "a list of strings")),
        }
    }

    /// An optional list of integers (JSON numbers or numeric strings).
    pub fn int_list_opt(&self, name: &str) -> Result<Option<Vec<i64>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()
                .map(Some)
                .ok_or_else(|| invalid_type(name, "a list of integers")),
            Some(_) => Err(invalid_type(name, "a list of integers")),
        }
    }

    /// An optional boolean: JSON `true`/`false`, or the text of `true`/`1`, `false`/`0`/`""` (form-encoded calls;
    /// JSON numbers arrive here as their text too).
    pub fn bool_opt(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.str_opt(name) {
            Ok(None) => Ok(None),
            Ok(Some(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" | "" => Ok(Some(false)),
                _ => Err(invalid_type(name, "a boolean")),
            },
            // JSON booleans are not strings.
            Err(_) => match self.int_opt(name)? {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                Some(_) => Err(invalid_type(name, "a boolean")),
                None => Ok(None),
            },
        }
    }

    /// A required integer.
    pub fn int_req(&self, name: &str) -> Result<i64, ApiError> {
        self.int_opt(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An optional nested object (e.g. `FlvParam`), as params of its own.
    pub fn object_opt(&self, name: &str) -> Result<Option<Params>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Params(m.clone()))),
            Some(_) => Err(invalid_type(name, "an object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dotted_keys_nest() {
        let p = Params::from_pairs(pairs(&[("L.1", "b"), ("L.0", "a"), ("O.K", "v"), ("N", "10")]));
        assert_eq!(p.0.get("L"), Some(&serde_json::json!(["a", "b"])));
        assert_eq!(p.0.get("O"), Some(&serde_json::json!({"K": "v"})));
        assert_eq!(p.int_req("N").expect("int"), 10);
    }

    #[test]
    fn booleans_from_json_and_text() {
        let p = Params::from_json(br#"{"a": true, "b": 0, "c": "False", "d": "", "e": "yes", "f": 2, "g": [1]}"#)
            .expect("json");
        assert_eq!(p.bool_opt("a").expect("a"), Some(true));
        assert_eq!(p.bool_opt("b").expect("b"), Some(false));
        assert_eq!(p.bool_opt("c").expect("c"), Some(false));
        assert_eq!(p.bool_opt("d").expect("d"), Some(false));
        assert_eq!(p.bool_opt("missing").expect("missing"), None);
        for bad in ["e", "f", "g"] {
            assert_eq!(p.bool_opt(bad).expect_err(bad).code, "InvalidParameter", "{bad}");
        }
        let form = Params::from_pairs(pairs(&[("RemoveWatermark", "1")]));
        assert_eq!(form.bool_opt("RemoveWatermark").expect("form"), Some(true));
    }

    #[test]
    fn coercion_and_errors() {
        let p = Params::from_json(br#"{"A": "10", "B": 3, "C": "x", "D": null, "E": [1]}"#).expect("json");
        assert_eq!(p.int_opt("A").expect("numeric string"), Some(10));
        assert_eq!(p.str_opt("B").expect("number as text"), Some("3".into()));
        assert_eq!(p.int_opt("C").expect_err("not a number").code, "InvalidParameter");
        assert_eq!(p.int_opt("D").expect("null is absent"), None);
        assert_eq!(p.str_req("D").expect_err("null is absent").code, "MissingParameter");
        assert_eq!(p.str_opt("E").expect_err("array").code, "InvalidParameter");
        assert!(Params::from_json(b"").expect("empty").0.is_empty());
        assert_eq!(Params::from_json(b"[1]").expect_err("array").code, "InvalidParameter");
    }
}
