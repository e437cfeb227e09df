//! The fields a row can change, their values, and how a value compares with what
//! an account holds.
//!
//! Everything here is pure: parsing a cell, writing the JSON body, deciding
//! whether an account already holds a value.

use std::fmt::Write as _;

use serde_json::Value as Json;

/// A patchable field of a Gcore client account, named as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Email,
    CompanyName,
    CustomId,
    Name,
    Phone,
    Reseller,
    Seller,
    IsTest,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::Email,
        Field::CompanyName,
        Field::CustomId,
        Field::Name,
        Field::Phone,
        Field::Reseller,
        Field::Seller,
        Field::IsTest,
    ];

    /// The name in the PATCH body and in CSV headers.
    pub fn api_name(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::CompanyName => "companyName",
            Field::CustomId => "custom_id",
            Field::Name => "name",
            Field::Phone => "phone",
            Field::Reseller => "reseller",
            Field::Seller => "seller",
            Field::IsTest => "is_test",
        }
    }

    /// The name in the `Client` response: the API returns `reseller` as `resellers`.
    pub fn response_name(self) -> &'static str {
        match self {
            Field::Reseller => "resellers",
            other => other.api_name(),
        }
    }

    /// Whether the API accepts JSON `null` for this field.
    pub fn nullable(self) -> bool {
        matches!(
            self,
            Field::CustomId | Field::Name | Field::Phone | Field::Seller
        )
    }

    /// Matches a header name: case-insensitive, spaces around it ignored.
    pub fn from_header(name: &str) -> Option<Field> {
        let name = name.trim();
        Field::ALL
            .into_iter()
            .find(|f| f.api_name().eq_ignore_ascii_case(name))
    }

    /// `custom_id, name, phone and seller`, for messages.
    pub fn names_of_nullable() -> String {
        let names: Vec<_> = Field::ALL
            .into_iter()
            .filter(|f| f.nullable())
            .map(Field::api_name)
            .collect();
        match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// A value a row sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Number(u64),
    Bool(bool),
}

impl Value {
    /// The value as JSON text, as it goes into the PATCH body.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Text(s) => {
                serde_json::to_writer(&mut *out, s).expect("a string always serializes")
            }
            Value::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }

    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The value as a CSV cell: the null token for null.
    pub fn to_cell(&self, null_token: &str) -> String {
        match self {
            Value::Null => null_token.to_string(),
            Value::Text(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

/// Why an account's `value` of `field`, written as a cell, would not read back
/// as itself (export and undo files are inputs too). `None` when it would.
pub fn unrepresentable(field: Field, value: &Value, null_token: &str) -> Option<String> {
    match value {
        Value::Null if !field.nullable() => {
            Some("has no value, and an input row cannot clear it".into())
        }
        Value::Text(s) if s == null_token => Some(format!(
            "is the text {}, which reads back as null (choose another --null-token)",
            quote(s)
        )),
        Value::Text(s) if s.trim().is_empty() => {
            Some("is empty, and an empty cell reads back as \"leave unchanged\"".into())
        }
        Value::Text(s) if s.trim() != s => Some(format!(
            "{} has spaces at its ends, which are trimmed when read back",
            quote(s)
        )),
        Value::Text(s) if field == Field::Email => parse_email(s)
            .err()
            .map(|e| format!("{e}, so a row holding it is refused")),
        _ => None,
    }
}

/// The most characters of a bad value quoted back in an error message.
const QUOTE_MAX: usize = 40;

/// Quotes a user's value for an error message: cut short when long, with
/// control characters escaped so that the message stays on one line.
pub fn quote(value: &str) -> String {
    format!("`{}`", shorten(value))
}

/// A user's value cut short for a message (`…` marks the cut), on one line.
pub fn shorten(value: &str) -> String {
    shorten_to(value, QUOTE_MAX)
}

/// [`shorten`] to at most `max_chars` characters.
pub fn shorten_to(value: &str, max_chars: usize) -> String {
    let mut chars = value.chars();
    let mut short = String::new();
    for c in chars.by_ref().take(max_chars) {
        if c.is_control() {
            short.extend(c.escape_debug());
        } else {
            short.push(c);
        }
    }
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// Parses a trimmed, non-empty cell into the value for `field`. The error names
/// the field and what is wrong.
pub fn parse_cell(field: Field, cell: &str, null_token: &str) -> Result<Value, String> {
    let name = field.api_name();
    if cell == null_token {
        if field.nullable() {
            return Ok(Value::Null);
        }
        // Text that happens to read `null` is a value only with another token.
        let or_text = if field == Field::CompanyName {
            format!(
                ", or choose another --null-token if {} is the value meant",
                quote(cell)
            )
        } else {
            String::new()
        };
        return Err(format!(
            "{name}: {} (null) is not allowed here: only {} can be cleared; leave the cell \
             empty to keep {name} as it is{or_text}",
            quote(cell),
            Field::names_of_nullable()
        ));
    }
    match field {
        Field::Email => parse_email(cell).map(|e| Value::Text(e.to_string())),
        // The contract sets no rule on text: the API has the last word.
        Field::CompanyName | Field::CustomId | Field::Name | Field::Phone => {
            Ok(Value::Text(cell.to_string()))
        }
        Field::Reseller | Field::Seller => match parse_whole(cell) {
            Ok(n) => Ok(Value::Number(n)),
            Err(NotWhole::TooLarge) => Err(too_large(name, cell)),
            Err(NotWhole::NotDigits) => {
                Err(format!("{name}: {} is not a whole number ≥ 0", quote(cell)))
            }
        },
        Field::IsTest => parse_bool(cell)
            .map(Value::Bool)
            .ok_or_else(|| format!("{name}: {} is not one of true, false, 1, 0", quote(cell))),
    }
    .map_err(|e| {
        if e.starts_with(name) {
            e
        } else {
            format!("{name}: {e}")
        }
    })
}

/// Why a cell is not a whole number the tool can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotWhole {
    /// Empty, or something else than the digits 0-9.
    NotDigits,
    /// Digits, but more than 64 bits hold. The API documents these fields as
    /// `integer` with no bound, so the bound is the tool's own.
    TooLarge,
}

/// Digits only (no sign, no spaces), fitting in 64 bits.
pub fn parse_whole(cell: &str) -> Result<u64, NotWhole> {
    // Up to 19 digits cannot overflow: one plain pass (every row has one or
    // two such cells).
    if (1..=19).contains(&cell.len()) {
        let mut n = 0u64;
        for b in cell.bytes() {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return Err(NotWhole::NotDigits);
            }
            n = n * 10 + u64::from(digit);
        }
        return Ok(n);
    }
    if cell.is_empty() || !cell.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotWhole::NotDigits);
    }
    cell.bytes()
        .try_fold(0u64, |n, b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .ok_or(NotWhole::TooLarge)
}

/// [`parse_whole`], when why it failed does not matter.
pub fn parse_whole_number(cell: &str) -> Option<u64> {
    parse_whole(cell).ok()
}

fn too_large(name: &str, cell: &str) -> String {
    format!(
        "{name}: {} is larger than the largest allowed, {}",
        quote(cell),
        u64::MAX
    )
}

/// A `client_id`: a whole number ≥ 1.
pub fn parse_client_id(cell: &str) -> Result<u64, String> {
    match parse_whole(cell) {
        Ok(0) => Err("client_id: `0` is not an account id (must be 1 or more)".into()),
        Ok(id) => Ok(id),
        Err(NotWhole::TooLarge) => Err(too_large("client_id", cell)),
        Err(NotWhole::NotDigits) if cell.is_empty() => Err("client_id: empty".into()),
        Err(NotWhole::NotDigits) => Err(format!(
            "client_id: {} is not a whole number ≥ 1",
            quote(cell)
        )),
    }
}

pub fn parse_bool(cell: &str) -> Option<bool> {
    if cell.eq_ignore_ascii_case("true") || cell == "1" {
        Some(true)
    } else if cell.eq_ignore_ascii_case("false") || cell == "0" {
        Some(false)
    } else {
        None
    }
}

/// The longest email address the API stores.
const EMAIL_MAX: usize = 254;

/// The contract's email rule: one `@` with a non-empty part on each side, a dot
/// in the domain, no spaces, at most 254 characters.
fn parse_email(cell: &str) -> Result<&str, String> {
    let len = cell.chars().count();
    if len > EMAIL_MAX {
        return Err(format!(
            "{} is {len} characters long; the most is {EMAIL_MAX}",
            quote(cell)
        ));
    }
    if let Some(c) = cell.chars().find(|c| c.is_whitespace() || c.is_control()) {
        let what = match c {
            ' ' => "a space".to_string(),
            '\n' | '\r' => "a line break".to_string(),
            '\t' => "a tab".to_string(),
            other => format!("the character U+{:04X}", other as u32),
        };
        return Err(format!("{} contains {what}", quote(cell)));
    }
    let mut parts = cell.split('@');
    let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(d), None) => (l, d),
        _ => {
            return Err(format!(
                "{} is not an email address (it needs exactly one @)",
                quote(cell)
            ));
        }
    };
    if local.is_empty() || domain.is_empty() {
        return Err(format!(
            "{} is not an email address (text is needed on both sides of the @)",
            quote(cell)
        ));
    }
    if !domain.contains('.') {
        return Err(format!(
            "{} is not an email address (the domain has no dot)",
            quote(cell)
        ));
    }
    Ok(cell)
}

/// What one row asks to change on one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPatch {
    pub client_id: u64,
    /// In the input's column order.
    pub changes: Vec<(Field, Value)>,
}

impl ClientPatch {
    /// The PATCH body: exactly the row's fields, `null` where the row says so.
    pub fn body(&self) -> String {
        let mut out = Vec::with_capacity(16 + self.changes.len() * 24);
        self.write_body(&mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// Appends the PATCH body to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (field, value)) in self.changes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(field.api_name().as_bytes());
            out.extend_from_slice(b"\":");
            value.write_json(out);
        }
        out.push(b'}');
    }

    /// The values the row asks for, as a JSON object with its fields in name
    /// order: the same request however the input's columns are ordered. The
    /// results record it, and `--resume` compares it.
    pub fn requested(&self) -> String {
        // Usually one field, or columns already in name order: no copy to
        // sort (this runs once a row).
        if self.changes.is_sorted_by_key(|(field, _)| field.api_name()) {
            return self.body();
        }
        let mut sorted = self.clone();
        sorted.changes.sort_by_key(|(field, _)| field.api_name());
        sorted.body()
    }

    /// The same patch restricted to the fields the account does not already hold.
    pub fn only_differences(&self, account: &AccountView) -> ClientPatch {
        ClientPatch {
            client_id: self.client_id,
            changes: self
                .changes
                .iter()
                .filter(|(field, value)| !holds(*field, value, account.get(*field)))
                .cloned()
                .collect(),
        }
    }

    /// `field: old -> new` for each field whose value would change, joined by `; `.
    pub fn diff(&self, account: &AccountView) -> String {
        let mut out = String::new();
        for (field, value) in &self.changes {
            let have = account.get(*field);
            if !holds(*field, value, have) {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                let _ = write!(
                    out,
                    "{}: {} -> {}",
                    field.api_name(),
                    show(have),
                    value.to_json()
                );
            }
        }
        out
    }

    /// The fields whose sent value the account does not hold, described for the
    /// `error` column of a `mismatch`.
    pub fn unheld(&self, account: &AccountView) -> Vec<String> {
        self.changes
            .iter()
            .filter(|(field, value)| !holds(*field, value, account.get(*field)))
            .map(|(field, value)| {
                format!(
                    "{} sent {} but the account holds {}",
                    field.api_name(),
                    value.to_json(),
                    show(account.get(*field))
                )
            })
            .collect()
    }
}

/// The fields of a `Client` response the tool reads. Parsed leniently: every
/// field optional, any JSON type, unknown fields skipped without being kept.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct AccountView {
    pub id: Option<Json>,
    pub status: Option<Json>,
    pub email: Option<Json>,
    #[serde(rename = "companyName")]
    pub company_name: Option<Json>,
    pub custom_id: Option<Json>,
    pub name: Option<Json>,
    pub phone: Option<Json>,
    pub resellers: Option<Json>,
    pub seller: Option<Json>,
    pub is_test: Option<Json>,
    pub client_type: Option<Json>,
}

impl AccountView {
    /// Parses a response body; `None` when it is not a JSON object.
    pub fn parse(body: &[u8]) -> Option<AccountView> {
        serde_json::from_slice(body).ok()
    }

    /// The account's value of `field`; `None` for a missing or null value.
    pub fn get(&self, field: Field) -> Option<&Json> {
        match field {
            Field::Email => self.email.as_ref(),
            Field::CompanyName => self.company_name.as_ref(),
            Field::CustomId => self.custom_id.as_ref(),
            Field::Name => self.name.as_ref(),
            Field::Phone => self.phone.as_ref(),
            Field::Reseller => self.resellers.as_ref(),
            Field::Seller => self.seller.as_ref(),
            Field::IsTest => self.is_test.as_ref(),
        }
    }

    /// The account's `status` as text, when it has one.
    pub fn status(&self) -> Option<String> {
        match &self.status {
            Some(Json::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        }
    }

    /// The account's id, when the response carries a whole-number one.
    pub fn id(&self) -> Option<u64> {
        match &self.id {
            Some(Json::Number(n)) => n.as_u64(),
            Some(Json::String(s)) => parse_whole_number(s),
            _ => None,
        }
    }

    /// The account's value of `field` as a row value, for the undo and export
    /// files. `Null` when missing.
    pub fn value(&self, field: Field) -> Value {
        match self.get(field) {
            None => Value::Null,
            Some(Json::String(s)) => match field {
                Field::Reseller | Field::Seller => parse_whole_number(s)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::Text(s.clone())),
                Field::IsTest => parse_bool(s)
                    .map(Value::Bool)
                    .unwrap_or_else(|| Value::Text(s.clone())),
                _ => Value::Text(s.clone()),
            },
            Some(Json::Number(n)) => match n.as_u64() {
                Some(n) => Value::Number(n),
                None => Value::Text(n.to_string()),
            },
            Some(Json::Bool(b)) => Value::Bool(*b),
            Some(other) => Value::Text(other.to_string()),
        }
    }
}

/// The names of the fields [`AccountView`] reads, in the order of its fields.
const ACCOUNT_KEYS: [&str; 11] = [
    "id",
    "status",
    "email",
    "companyName",
    "custom_id",
    "name",
    "phone",
    "resellers",
    "seller",
    "is_test",
    "client_type",
];

/// The usual answer to a PATCH, checked at a glance: `Some(status)` when
/// `body` is a JSON object for account `client_id` holding every value of
/// `sent` (by [`holds`]), with its `status` as [`AccountView::status`] gives
/// it. `None` when it is not, or when a glance cannot tell (a value that is
/// not null, a boolean, a whole number or a string without escapes; a field
/// named twice; anything but an object): [`AccountView::parse`] then decides,
/// and names what is wrong. Equal to parsing the account whole whenever it
/// says `Some`, without building a JSON value for every field: on a run
/// against a fast server, that parse was a third of the tool's own work per
/// row.
pub fn confirms(body: &[u8], client_id: u64, sent: &ClientPatch) -> Option<Option<String>> {
    // Checked as UTF-8 whole, once, rather than string by string (an
    // answer that is not is left to the whole parse).
    let glance: Glance<'_> = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    // Missing and null read alike, as in `AccountView` (an `Option` there).
    let value = |key: &str| -> Option<Option<Json>> {
        let i = ACCOUNT_KEYS.iter().position(|k| *k == key)?;
        match glance.0[i] {
            None | Some(Scalar::Null) => Some(None),
            Some(Scalar::Bool(b)) => Some(Some(Json::Bool(b))),
            Some(Scalar::Whole(n)) => Some(Some(Json::from(n))),
            Some(Scalar::Text(s)) => Some(Some(Json::String(s.to_string()))),
            Some(Scalar::Other) => None,
        }
    };
    let id = match glance.0[0] {
        Some(Scalar::Whole(n)) => Some(n),
        Some(Scalar::Text(s)) => parse_whole_number(s),
        _ => None,
    };
    if id != Some(client_id) {
        return None;
    }
    for (field, want) in &sent.changes {
        if !holds(*field, want, value(field.response_name())?.as_ref()) {
            return None;
        }
    }
    Some(match value("status")? {
        Some(Json::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
        None => None,
    })
}

/// What [`confirms`] reads of an answer: the fields [`AccountView`] reads
/// (in [`ACCOUNT_KEYS`] order), borrowed from the body.
struct Glance<'a>([Option<Scalar<'a>>; ACCOUNT_KEYS.len()]);

/// A JSON value as [`confirms`] sees it.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Whole(u64),
    /// A string without escapes, borrowed from the body.
    Text(&'a str),
    /// Anything else (skipped over, never kept).
    Other,
}

impl<'de> serde::Deserialize<'de> for Glance<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Glance<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Glance<'de>, M::Error> {
                let mut glance = Glance([None; ACCOUNT_KEYS.len()]);
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key.0 {
                        Some(i) if glance.0[i].is_some() => {
                            return Err(serde::de::Error::custom("a field named twice"));
                        }
                        Some(i) => glance.0[i] = Some(map.next_value()?),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(glance)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// An object key: its place in [`ACCOUNT_KEYS`], if it is one of them.
struct KeyName(Option<usize>);

impl<'de> serde::Deserialize<'de> for KeyName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = KeyName;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<KeyName, E> {
                Ok(KeyName(ACCOUNT_KEYS.iter().position(|k| *k == key)))
            }
        }
        d.deserialize_identifier(Visit)
    }
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Whole(n))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(s))
            }
            fn visit_str<E>(self, _: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            // Read as `AccountView` reads them (into a JSON value), so that
            // what one refuses the other refuses too; rare, and not kept.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Scalar<'de>, A::Error> {
                use serde::Deserialize as _;
                Json::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Scalar::Other)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<Scalar<'de>, M::Error> {
                use serde::Deserialize as _;
                Json::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Whether an account value `have` already holds the row's value `want`.
/// `null` equals a missing or null value; emails compare case-insensitively;
/// numbers and booleans also match their text forms.
pub fn holds(field: Field, want: &Value, have: Option<&Json>) -> bool {
    match (want, have) {
        (Value::Null, None) | (Value::Null, Some(Json::Null)) => true,
        (_, None) | (Value::Null, _) => false,
        (Value::Text(w), Some(Json::String(h))) => {
            if field == Field::Email {
                w.to_lowercase() == h.to_lowercase()
            } else {
                w == h
            }
        }
        (Value::Number(w), Some(Json::Number(h))) => h.as_u64() == Some(*w),
        (Value::Number(w), Some(Json::String(h))) => parse_whole_number(h) == Some(*w),
        (Value::Bool(w), Some(Json::Bool(h))) => w == h,
        (Value::Bool(w), Some(Json::String(h))) => parse_bool(h) == Some(*w),
        _ => false,
    }
}

/// An account value as JSON text, `null` when missing.
fn show(have: Option<&Json>) -> String {
    match have {
        None => "null".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_names_match_case_insensitively() {
        assert_eq!(
            Field::from_header(" CompanyName "),
            Some(Field::CompanyName)
        );
        assert_eq!(Field::from_header("IS_TEST"), Some(Field::IsTest));
        assert_eq!(Field::from_header("resellers"), None);
    }

    #[test]
    fn parses_each_kind_of_value() {
        let p = |f, c| parse_cell(f, c, "null");
        assert_eq!(p(Field::Reseller, "42"), Ok(Value::Number(42)));
        assert_eq!(p(Field::Seller, "0"), Ok(Value::Number(0)));
        assert_eq!(p(Field::Seller, "null"), Ok(Value::Null));
        assert_eq!(p(Field::IsTest, "TRUE"), Ok(Value::Bool(true)));
        assert_eq!(p(Field::IsTest, "0"), Ok(Value::Bool(false)));
        assert_eq!(
            p(Field::Name, "Zoë, \"Z\""),
            Ok(Value::Text("Zoë, \"Z\"".into()))
        );
        assert_eq!(p(Field::Email, "a@b.co"), Ok(Value::Text("a@b.co".into())));
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let e = |f, c| parse_cell(f, c, "null").unwrap_err();
        assert!(e(Field::Reseller, "-1").starts_with("reseller: `-1` is not a whole number"));
        assert!(e(Field::Reseller, "1.5").contains("not a whole number"));
        assert!(e(Field::Seller, "+3").contains("not a whole number"));
        assert_eq!(
            e(Field::Reseller, "99999999999999999999"),
            "reseller: `99999999999999999999` is larger than the largest allowed, \
             18446744073709551615"
        );
        assert!(e(Field::Seller, "1e30").contains("not a whole number"));
        assert!(e(Field::IsTest, "yes").starts_with("is_test: `yes` is not one of"));
        assert!(e(Field::Email, "null").starts_with("email: `null` (null) is not allowed"));
        assert!(e(Field::Reseller, "null").contains("only custom_id, name, phone and seller"));
        assert!(e(Field::Reseller, "null").contains("leave the cell empty to keep reseller"));
        assert!(!e(Field::Reseller, "null").contains("--null-token"));
        assert!(e(Field::CompanyName, "null").contains("another --null-token"));
        assert!(e(Field::IsTest, "null").contains("not allowed"));
        assert!(e(Field::CompanyName, "null").contains("not allowed"));
    }

    #[test]
    fn email_rules() {
        let ok = |c| parse_cell(Field::Email, c, "null").is_ok();
        assert!(ok("x@y.z"));
        assert!(ok("first.last+tag@sub.example.com"));
        assert!(!ok("no-at.example.com"));
        assert!(!ok("two@@example.com"));
        assert!(!ok("a@b@c.com"));
        assert!(!ok("@example.com"));
        assert!(!ok("user@"));
        assert!(!ok("user@localhost"));
        assert!(!ok("us er@example.com"));
        let e = parse_cell(Field::Email, "a\nb@x.com", "null").unwrap_err();
        assert_eq!(e, "email: `a\\nb@x.com` contains a line break");
        let long = format!("{}@example.com", "a".repeat(243));
        assert_eq!(long.len(), 255);
        assert!(!ok(&long));
        assert!(ok(&long[1..]));
    }

    #[test]
    fn custom_null_token() {
        assert_eq!(parse_cell(Field::Phone, "-", "-"), Ok(Value::Null));
        assert_eq!(
            parse_cell(Field::Phone, "null", "-"),
            Ok(Value::Text("null".into()))
        );
    }

    #[test]
    fn values_that_do_not_survive_a_csv_cell() {
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(unrepresentable(Field::Name, &text("Ann"), "null"), None);
        assert_eq!(unrepresentable(Field::Seller, &Value::Null, "null"), None);
        assert!(
            unrepresentable(Field::CustomId, &text("null"), "null")
                .unwrap()
                .contains("reads back as null")
        );
        assert_eq!(unrepresentable(Field::CustomId, &text("null"), "-"), None);
        assert!(
            unrepresentable(Field::Name, &text(" Ann"), "null")
                .unwrap()
                .contains("trimmed")
        );
        assert!(
            unrepresentable(Field::Phone, &text(""), "null")
                .unwrap()
                .contains("empty")
        );
        assert!(
            unrepresentable(Field::Reseller, &Value::Null, "null")
                .unwrap()
                .contains("cannot clear")
        );
        assert!(
            unrepresentable(Field::Email, &text("root@localhost"), "null")
                .unwrap()
                .contains("no dot")
        );
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_whole_number("0"), Some(0));
        assert_eq!(parse_whole_number("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_whole_number("18446744073709551616"), None);
        assert_eq!(parse_whole_number("99999999999999999999"), None);
        for bad in ["", "+1", "-1", " 1", "1 ", "1.0", "1e3", "١"] {
            assert_eq!(parse_whole_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn client_ids() {
        assert_eq!(parse_client_id("17"), Ok(17));
        assert_eq!(parse_client_id("007"), Ok(7));
        assert!(parse_client_id("0").is_err());
        assert!(parse_client_id("-5").is_err());
        assert!(parse_client_id("abc").unwrap_err().contains("`abc`"));
        assert!(
            parse_client_id("18446744073709551616")
                .unwrap_err()
                .contains("larger than the largest allowed, 18446744073709551615")
        );
        assert_eq!(parse_client_id(""), Err("client_id: empty".into()));
    }

    #[test]
    fn body_holds_exactly_the_row_fields() {
        let patch = ClientPatch {
            client_id: 5,
            changes: vec![
                (Field::Name, Value::Text("Ann \"A\", Jr.".into())),
                (Field::Seller, Value::Null),
                (Field::Reseller, Value::Number(7)),
                (Field::IsTest, Value::Bool(false)),
            ],
        };
        let body: Json = serde_json::from_str(&patch.body()).unwrap();
        assert_eq!(
            body,
            json!({"name": "Ann \"A\", Jr.", "seller": null, "reseller": 7, "is_test": false})
        );
    }

    #[test]
    fn comparison_rules() {
        let j = json!({"email": "Ann@Example.com", "resellers": 7, "seller": null,
                       "name": "x", "is_test": "true", "extra": [1, 2]});
        let acct: AccountView = serde_json::from_value(j).unwrap();
        assert!(holds(
            Field::Email,
            &Value::Text("ann@example.COM".into()),
            acct.get(Field::Email)
        ));
        assert!(holds(
            Field::Reseller,
            &Value::Number(7),
            acct.get(Field::Reseller)
        ));
        assert!(holds(Field::Seller, &Value::Null, acct.get(Field::Seller)));
        assert!(holds(Field::Phone, &Value::Null, acct.get(Field::Phone)));
        assert!(holds(
            Field::IsTest,
            &Value::Bool(true),
            acct.get(Field::IsTest)
        ));
        assert!(!holds(
            Field::Name,
            &Value::Text("X".into()),
            acct.get(Field::Name)
        ));
        assert!(!holds(
            Field::Seller,
            &Value::Number(0),
            acct.get(Field::Seller)
        ));

        let patch = ClientPatch {
            client_id: 1,
            changes: vec![
                (Field::Reseller, Value::Number(8)),
                (Field::Email, Value::Text("ann@example.com".into())),
                (Field::Name, Value::Null),
            ],
        };
        assert_eq!(patch.diff(&acct), "reseller: 7 -> 8; name: \"x\" -> null");
        assert_eq!(
            patch.only_differences(&acct).changes,
            vec![
                (Field::Reseller, Value::Number(8)),
                (Field::Name, Value::Null)
            ]
        );
    }

    #[test]
    fn lenient_account_parsing() {
        assert!(AccountView::parse(b"<html>").is_none());
        let acct = AccountView::parse(br#"{"status": 3, "users": [{"id": 1}]}"#).unwrap();
        assert_eq!(acct.status().as_deref(), Some("3"));
        assert_eq!(acct.value(Field::Seller), Value::Null);
    }

    /// What the whole parse decides: the status when the answer is account
    /// `id` holding everything sent, else `None`.
    fn confirmed_the_long_way(body: &[u8], id: u64, sent: &ClientPatch) -> Option<Option<String>> {
        let account = AccountView::parse(body)?;
        (account.id() == Some(id) && sent.unheld(&account).is_empty()).then(|| account.status())
    }

    #[test]
    fn a_glance_confirms_the_usual_answer() {
        let sent = ClientPatch {
            client_id: 7,
            changes: vec![
                (Field::Reseller, Value::Number(900002)),
                (Field::Email, Value::Text("Ann@Example.com".into())),
                (Field::Phone, Value::Null),
            ],
        };
        let body = br#"{"id":7,"resellers":900002,"email":"ann@example.com","status":"active","users":[{"id":1}]}"#;
        assert_eq!(confirms(body, 7, &sent), Some(Some("active".into())));
        assert_eq!(
            confirms(
                br#"{"id":"7","resellers":"900002","email":"ANN@example.com","phone":null}"#,
                7,
                &sent
            ),
            Some(None)
        );
        // Anything else is left to the whole parse.
        for other in [
            &br#"{"id":8,"resellers":900002,"email":"ann@example.com"}"#[..],
            br#"{"id":7,"resellers":900003,"email":"ann@example.com"}"#,
            br#"{"id":7,"resellers":900002,"email":"ann@example.com","phone":"1"}"#,
            br#"{"id":7,"id":7,"resellers":900002,"email":"ann@example.com"}"#,
            br#"{"id":7,"resellers":900002,"email":"ann\u0040example.com"}"#,
            br#"{"id":7,"resellers":900002,"email":"ann@example.com","status":{"a":1}}"#,
            br#"[7,"active"]"#,
            b"<html>",
        ] {
            assert_eq!(
                confirms(other, 7, &sent),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    proptest::proptest! {
        /// Whenever a glance confirms an answer, the whole parse confirms it
        /// too, with the same status.
        #[test]
        fn a_glance_never_confirms_what_the_whole_parse_would_not(
            entries in proptest::collection::vec((
                proptest::sample::select(vec!["id", "status", "email", "resellers", "seller",
                    "is_test", "name", "client_type", "other", "st\\u0061tus"]),
                proptest::sample::select(vec!["null", "true", "false", "7", "-7", "7.0", "1e3",
                    "18446744073709551616", "900002", "\"7\"", "\"900002\"", "\"true\"",
                    "\"a@b.co\"", "\"A@B.CO\"", "\"active\"", "\"\\u0061\"", "[1,{\"a\":null}]",
                    "{\"b\":[]}", "\"\\ud800\"", "[\"\\ud800\"]"]),
            ), 0..8),
            id in 6u64..8,
            fields in proptest::collection::vec(0usize..4, 0..4),
        ) {
            let body = format!("{{{}}}", entries.iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect::<Vec<_>>()
                .join(","));
            let choices = [
                (Field::Email, Value::Text("a@b.co".into())),
                (Field::Reseller, Value::Number(900002)),
                (Field::Seller, Value::Null),
                (Field::IsTest, Value::Bool(true)),
            ];
            let sent = ClientPatch {
                client_id: id,
                changes: fields.iter().map(|&i| choices[i].clone()).collect(),
            };
            let glance = confirms(body.as_bytes(), id, &sent);
            if glance.is_some() {
                proptest::prop_assert_eq!(glance, confirmed_the_long_way(body.as_bytes(), id, &sent), "{}", body);
            }
        }
    }
}
