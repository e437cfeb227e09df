//! Validation of a `PATCH /iam/clients/{id}` body the way Gcore's Django REST
//! Framework serializer answers it, and applying a valid patch to an account.
//!
//! Types follow the OpenAPI spec's `UpdateClientRequest`. The simulator is
//! stricter than DRF in one respect, on purpose: DRF coerces `123` to `"123"`
//! for a string field and `"5"` to `5` for an integer field, which would hide
//! a client that sends the wrong JSON type (and loses leading zeros). Here the
//! JSON type must match; the error messages are DRF's own wording.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::account::Account;

/// The fields `PATCH /iam/clients/{id}` accepts.
pub const PATCH_FIELDS: [&str; 8] = [
    "email",
    "companyName",
    "custom_id",
    "name",
    "phone",
    "reseller",
    "seller",
    "is_test",
];

const MAY_NOT_BE_NULL: &str = "This field may not be null.";
const NOT_A_STRING: &str = "Not a valid string.";
const MAY_NOT_BE_BLANK: &str = "This field may not be blank.";
const INVALID_EMAIL: &str = "Enter a valid email address.";
const EMAIL_TOO_LONG: &str = "Ensure this field has no more than 254 characters.";
const NOT_AN_INTEGER: &str = "A valid integer is required.";
const NEGATIVE: &str = "Ensure this value is greater than or equal to 0.";
const NOT_A_BOOLEAN: &str = "Must be a valid boolean.";

const EMAIL_MAX_CHARS: usize = 254;

/// A validated patch: `None` leaves a field alone; for nullable fields,
/// `Some(None)` sets it to null.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientPatch {
    pub email: Option<String>,
    pub company_name: Option<String>,
    pub custom_id: Option<Option<String>>,
    pub name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub reseller: Option<u64>,
    pub seller: Option<Option<u64>>,
    pub is_test: Option<bool>,
}

/// Why a PATCH body was refused (always a 400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PatchRejection {
    /// Not JSON, or JSON but not an object.
    Parse(String),
    /// Field name → DRF messages, for every bad field.
    Fields(BTreeMap<&'static str, Vec<&'static str>>),
}

impl PatchRejection {
    /// The 400 body Gcore sends for this rejection.
    pub fn to_json(&self) -> Value {
        match self {
            PatchRejection::Parse(what) => {
                json!({ "message": format!("JSON parse error - {what}") })
            }
            PatchRejection::Fields(errors) => json!({ "errors": errors }),
        }
    }
}

/// Parses and validates a PATCH body. Unknown fields are ignored, as DRF does.
pub(crate) fn parse_patch(body: &[u8]) -> Result<ClientPatch, PatchRejection> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PatchRejection::Parse(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(PatchRejection::Parse(format!(
            "expected a JSON object, got {}",
            json_kind(&value)
        )));
    };
    validate_fields(&fields)
}

fn validate_fields(fields: &Map<String, Value>) -> Result<ClientPatch, PatchRejection> {
    let mut errors: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    let mut patch = ClientPatch::default();
    // Collects a field's outcome: keeps the value, or records its messages.
    let mut check = |field: &'static str, outcome: Result<(), Vec<&'static str>>| {
        if let Err(messages) = outcome {
            errors.insert(field, messages);
        }
    };
    if let Some(v) = fields.get("email") {
        check("email", email(v).map(|e| patch.email = Some(e)));
    }
    if let Some(v) = fields.get("companyName") {
        check(
            "companyName",
            required_string(v).map(|s| patch.company_name = Some(s)),
        );
    }
    if let Some(v) = fields.get("custom_id") {
        check(
            "custom_id",
            nullable_string(v).map(|s| patch.custom_id = Some(s)),
        );
    }
    if let Some(v) = fields.get("name") {
        check("name", nullable_string(v).map(|s| patch.name = Some(s)));
    }
    if let Some(v) = fields.get("phone") {
        check("phone", nullable_string(v).map(|s| patch.phone = Some(s)));
    }
    if let Some(v) = fields.get("reseller") {
        let outcome = if v.is_null() {
            Err(vec![MAY_NOT_BE_NULL])
        } else {
            id_number(v)
        };
        check("reseller", outcome.map(|n| patch.reseller = Some(n)));
    }
    if let Some(v) = fields.get("seller") {
        let outcome = if v.is_null() {
            Ok(None)
        } else {
            id_number(v).map(Some)
        };
        check("seller", outcome.map(|n| patch.seller = Some(n)));
    }
    if let Some(v) = fields.get("is_test") {
        let outcome = match v {
            Value::Bool(b) => Ok(*b),
            Value::Null => Err(vec![MAY_NOT_BE_NULL]),
            _ => Err(vec![NOT_A_BOOLEAN]),
        };
        check("is_test", outcome.map(|b| patch.is_test = Some(b)));
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(PatchRejection::Fields(errors))
    }
}

/// A non-null string, trimmed (DRF's `CharField` trims by default), not blank.
fn required_string(v: &Value) -> Result<String, Vec<&'static str>> {
    match v {
        Value::Null => Err(vec![MAY_NOT_BE_NULL]),
        Value::String(s) if s.trim().is_empty() => Err(vec![MAY_NOT_BE_BLANK]),
        Value::String(s) => Ok(s.trim().to_owned()),
        _ => Err(vec![NOT_A_STRING]),
    }
}

/// A string or null; blank is allowed for the nullable fields.
fn nullable_string(v: &Value) -> Result<Option<String>, Vec<&'static str>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        _ => Err(vec![NOT_A_STRING]),
    }
}

fn email(v: &Value) -> Result<String, Vec<&'static str>> {
    let address = required_string(v)?;
    let mut messages = Vec::new();
    if !is_valid_email(&address) {
        messages.push(INVALID_EMAIL);
    }
    if address.chars().count() > EMAIL_MAX_CHARS {
        messages.push(EMAIL_TOO_LONG);
    }
    if messages.is_empty() {
        Ok(address)
    } else {
        Err(messages)
    }
}

/// An id: a JSON integer ≥ 0 (not a float, not a numeric string).
fn id_number(v: &Value) -> Result<u64, Vec<&'static str>> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(id), _) => Ok(id),
            (None, Some(_negative)) => Err(vec![NEGATIVE]),
            (None, None) => Err(vec![NOT_AN_INTEGER]),
        },
        _ => Err(vec![NOT_AN_INTEGER]),
    }
}

/// The email shape the tool and the reference agree on: one `@`, a non-empty
/// part on each side, a dot in the domain with no empty labels, no whitespace.
pub(crate) fn is_valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
        && !address.chars().any(char::is_whitespace)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl ClientPatch {
    /// Applies the patch, skipping the fields named in `ignored` (a fault that
    /// makes the server silently drop them while still answering 200).
    pub fn apply(&self, account: &mut Account, ignored: &[String]) {
        let applies = |field: &str| !ignored.iter().any(|f| f == field);
        if let (Some(v), true) = (&self.email, applies("email")) {
            account.email.clone_from(v);
        }
        if let (Some(v), true) = (&self.company_name, applies("companyName")) {
            account.company_name.clone_from(v);
        }
        if let (Some(v), true) = (&self.custom_id, applies("custom_id")) {
            account.custom_id.clone_from(v);
        }
        if let (Some(v), true) = (&self.name, applies("name")) {
            account.name.clone_from(v);
        }
        if let (Some(v), true) = (&self.phone, applies("phone")) {
            account.phone.clone_from(v);
        }
        if let (Some(v), true) = (self.reseller, applies("reseller")) {
            account.reseller = v;
        }
        if let (Some(v), true) = (self.seller, applies("seller")) {
            account.seller = v;
        }
        if let (Some(v), true) = (self.is_test, applies("is_test")) {
            account.is_test = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_errors(body: &str) -> BTreeMap<&'static str, Vec<&'static str>> {
        match parse_patch(body.as_bytes()) {
            Err(PatchRejection::Fields(errors)) => errors,
            other => panic!("expected field errors for {body}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_every_field_with_its_type() {
        let patch = parse_patch(
            br#"{"email":"a@b.io","companyName":" Acme ","custom_id":null,"name":"N",
                "phone":null,"reseller":0,"seller":null,"is_test":true,"unknown":1}"#,
        )
        .expect("valid patch");
        assert_eq!(
            patch,
            ClientPatch {
                email: Some("a@b.io".into()),
                company_name: Some("Acme".into()),
                custom_id: Some(None),
                name: Some(Some("N".into())),
                phone: Some(None),
                reseller: Some(0),
                seller: Some(None),
                is_test: Some(true),
            }
        );
    }

    #[test]
    fn lists_every_bad_field() {
        let errors = field_errors(
            r#"{"email":null,"companyName":5,"custom_id":7,"reseller":"5",
                "seller":-1,"is_test":"true"}"#,
        );
        assert_eq!(errors["email"], vec![MAY_NOT_BE_NULL]);
        assert_eq!(errors["companyName"], vec![NOT_A_STRING]);
        assert_eq!(errors["custom_id"], vec![NOT_A_STRING]);
        assert_eq!(errors["reseller"], vec![NOT_AN_INTEGER]);
        assert_eq!(errors["seller"], vec![NEGATIVE]);
        assert_eq!(errors["is_test"], vec![NOT_A_BOOLEAN]);
    }

    #[test]
    fn null_rules_follow_the_spec() {
        for field in ["email", "companyName", "reseller", "is_test"] {
            let errors = field_errors(&format!(r#"{{"{field}":null}}"#));
            assert_eq!(errors[field], vec![MAY_NOT_BE_NULL], "{field}");
        }
        for field in ["custom_id", "name", "phone", "seller"] {
            assert!(parse_patch(format!(r#"{{"{field}":null}}"#).as_bytes()).is_ok());
        }
    }

    #[test]
    fn integers_must_be_whole_json_numbers() {
        for bad in ["1.5", "1.0", "true", "[1]", "1e30"] {
            let errors = field_errors(&format!(r#"{{"seller":{bad}}}"#));
            assert_eq!(errors["seller"], vec![NOT_AN_INTEGER], "{bad}");
        }
    }

    #[test]
    fn email_format() {
        for good in ["a@b.co", "first.last+tag@mail.example.com"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "", "plain", "@b.co", "a@", "a@b", "a@@b.co", "a@b@c.co", "a b@c.co", "a@b..co",
            "a@.b.co", "a@b.co.",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        assert_eq!(
            field_errors(r#"{"email":"nope"}"#)["email"],
            vec![INVALID_EMAIL]
        );
        assert_eq!(
            field_errors(r#"{"email":""}"#)["email"],
            vec![MAY_NOT_BE_BLANK]
        );
        assert_eq!(field_errors(r#"{"email":1}"#)["email"], vec![NOT_A_STRING]);
        let long = format!(r#"{{"email":"{}@example.com"}}"#, "a".repeat(250));
        assert_eq!(field_errors(&long)["email"], vec![EMAIL_TOO_LONG]);
    }

    #[test]
    fn non_object_bodies_are_parse_errors() {
        for body in ["", "[1]", "\"x\"", "{\"email\":", "null"] {
            match parse_patch(body.as_bytes()) {
                Err(rejection @ PatchRejection::Parse(_)) => {
                    let message = rejection.to_json()["message"].as_str().map(str::to_owned);
                    assert!(
                        message.is_some_and(|m| m.starts_with("JSON parse error - ")),
                        "{body}"
                    );
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn apply_skips_ignored_fields() {
        let mut account = Account::generated(1);
        let before = account.clone();
        let patch = parse_patch(br#"{"name":"New","reseller":5}"#).expect("valid patch");
        patch.apply(&mut account, &["reseller".to_owned()]);
        assert_eq!(account.name.as_deref(), Some("New"));
        assert_eq!(account.reseller, before.reseller);
    }
}
