//! JSON Schema for Gemini function declarations and structured output.
//!
//! Two targets: `parametersJsonSchema` / `responseJsonSchema` (Gemini 2.5 and
//! later) take real JSON Schema and need only the meta keywords removed;
//! `parameters` / `responseSchema` take Google's `Schema` (an OpenAPI 3.0
//! subset), to which a JSON Schema must be converted.

use serde_json::{Map, Value, json};

/// Meta keywords Vertex rejects anywhere (`Unknown name "$schema"`).
const META: [&str; 3] = ["$schema", "$id", "$comment"];

/// A JSON Schema with the meta keywords removed at every level.
pub fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .filter(|(k, _)| !META.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), json_schema(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Keywords of Google's `Schema` this converter emits.
const SCHEMA_KEYS: [&str; 19] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "propertyOrdering",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
];

/// Converts a JSON Schema to Google's `Schema`: `$ref`s inlined, list-valued
/// `type` and null branches turned into `nullable`, `oneOf` into `anyOf`,
/// `const` into `enum`, non-string enums stringified, and everything else
/// `Schema` lacks removed. `None` for an empty object schema (a function
/// without parameters).
pub fn openapi(schema: &Value) -> Result<Option<Value>, String> {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let out = convert(schema, &defs, 0)?;
    let empty_object = out.get("type").and_then(Value::as_str) == Some("object")
        && out
            .get("properties")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
    Ok((!empty_object).then_some(out))
}

fn convert(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Result<Value, String> {
    if depth > 32 {
        return Err("the schema nests too deeply or refers to itself, which Gemini's schema format cannot express".into());
    }
    let Some(obj) = schema.as_object() else {
        // `true` / `{}`-like schemas: anything goes.
        return Ok(json!({}));
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))
            .ok_or_else(|| format!("schema reference {r:?} cannot be resolved"))?;
        let target = defs
            .get(name)
            .ok_or_else(|| format!("schema reference {r:?} names no definition"))?;
        return convert(target, defs, depth + 1);
    }
    let mut out = Map::new();
    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // `type`, possibly a list.
    match obj.get("type") {
        Some(Value::Array(types)) => {
            let non_null: Vec<&Value> = types
                .iter()
                .filter(|t| t.as_str() != Some("null"))
                .collect();
            nullable |= non_null.len() < types.len();
            match non_null.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).clone());
                }
                many => {
                    let branches: Vec<Value> = many.iter().map(|t| json!({"type": t})).collect();
                    out.insert("anyOf".into(), Value::Array(branches));
                }
            }
        }
        Some(Value::String(t)) if t == "null" => {
            nullable = true;
        }
        Some(t) => {
            out.insert("type".into(), t.clone());
        }
        None => {}
    }

    // anyOf / oneOf, with null branches folded into `nullable`.
    let alternatives = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(alts) = alternatives {
        let mut branches = Vec::new();
        for alt in alts {
            if alt.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
            } else {
                branches.push(convert(alt, defs, depth + 1)?);
            }
        }
        if branches.len() == 1 {
            if let Some(Value::Object(only)) = branches.pop() {
                for (k, v) in only {
                    out.entry(k).or_insert(v);
                }
            }
        } else if !branches.is_empty() {
            out.insert("anyOf".into(), Value::Array(branches));
        }
    }

    if let Some(c) = obj.get("const") {
        out.insert("enum".into(), json!([c]));
    } else if let Some(e) = obj.get("enum") {
        out.insert("enum".into(), e.clone());
    }
    if let Some(Value::Array(values)) = out.get("enum").cloned()
        && values.iter().any(|v| !v.is_string())
    {
        let strings: Vec<Value> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| match v {
                Value::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            })
            .collect();
        nullable |= values.iter().any(Value::is_null);
        out.insert("enum".into(), Value::Array(strings));
        out.insert("format".into(), json!("enum"));
    }
    if out.contains_key("enum") && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }

    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let mut converted = Map::new();
        for (name, prop) in props {
            converted.insert(name.clone(), convert(prop, defs, depth + 1)?);
        }
        out.insert("properties".into(), Value::Object(converted));
    }
    if let Some(items) = obj.get("items") {
        out.insert("items".into(), convert(items, defs, depth + 1)?);
    }
    for key in SCHEMA_KEYS {
        if out.contains_key(key) {
            continue;
        }
        if let Some(v) = obj.get(key) {
            if matches!(key, "type" | "enum" | "items" | "properties" | "nullable") {
                continue;
            }
            out.insert(key.into(), v.clone());
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schema_mode_only_drops_meta_keywords() {
        let s = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                       "properties": {"a": {"$comment": "x", "type": "string", "const": "k"}}, "additionalProperties": false});
        assert_eq!(
            json_schema(&s),
            json!({"type": "object", "properties": {"a": {"type": "string", "const": "k"}}, "additionalProperties": false})
        );
    }

    #[test]
    fn openapi_conversion() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": {"type": ["string", "null"], "description": "who"},
                "kind": {"const": "cat"},
                "level": {"enum": [1, 2, null]},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "uniqueItems": true},
                "when": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer", "exclusiveMinimum": 0}]}
            },
            "required": ["name"],
            "$defs": {"tag": {"type": "string", "minLength": 1, "examples": ["a"]}}
        });
        assert_eq!(
            openapi(&s).unwrap().unwrap(),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "who", "nullable": true},
                    "kind": {"enum": ["cat"], "type": "string"},
                    "level": {"enum": ["1", "2"], "format": "enum", "type": "string", "nullable": true},
                    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "when": {"type": "string", "format": "date-time", "nullable": true},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}
                },
                "required": ["name"]
            })
        );
    }

    #[test]
    fn empty_object_means_no_parameters_and_recursion_is_refused() {
        assert_eq!(
            openapi(&json!({"type": "object", "properties": {}})).unwrap(),
            None
        );
        let recursive = json!({"type": "object", "properties": {"n": {"$ref": "#/$defs/node"}},
                               "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}});
        assert!(
            openapi(&recursive)
                .unwrap_err()
                .contains("refers to itself")
        );
    }
}
