//! The input's header: which column is the key, which field each other
//! column sets, and the messages for a header that cannot be used.

use csv::ByteRecord;

use crate::error::Fatal;
use crate::fields::{self, Field};
use crate::input::dialect::SAVE_AS_UTF8;

/// Header names accepted for the row key, in the order they are suggested.
pub const KEY_NAMES: [&str; 3] = ["client_id", "clientId", "id"];

/// The column `export` and undo files write to say when each account was
/// read: accepted in an input, and ignored.
pub const READ_AT: &str = "read_at";

/// The most columns a header may have: a valid one has at most 9.
pub const MAX_HEADER_COLUMNS: usize = 1000;

/// Header problems list at most this many columns, then how many more.
const COLUMNS_LISTED: usize = 10;

/// The input header: where the key is and which field each other column sets.
#[derive(Debug, Clone)]
pub struct Header {
    pub(crate) key: usize,
    /// One entry per column; `None` for the key column.
    pub(crate) columns: Vec<Option<Field>>,
    /// Column names as written, for messages.
    pub(crate) names: Vec<String>,
}

impl Header {
    pub fn parse(record: &ByteRecord) -> Result<Header, Fatal> {
        if record.len() > MAX_HEADER_COLUMNS {
            return Err(too_many_columns(&format!(
                "{}, more than {MAX_HEADER_COLUMNS},",
                record.len()
            )));
        }
        if record.iter().any(|cell| cell.contains(&0)) {
            return Err(crate::input::dialect::refuse_nul_header());
        }
        let mut names = Vec::with_capacity(record.len());
        for cell in record.iter() {
            match std::str::from_utf8(cell) {
                Ok(text) => names.push(text.trim().to_string()),
                Err(_) => {
                    return Err(Fatal::Input(format!(
                        "the header row is not valid UTF-8 text: {SAVE_AS_UTF8}"
                    )));
                }
            }
        }

        let mut key = None;
        let mut columns = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if name.eq_ignore_ascii_case(READ_AT) {
                columns.push(None);
                continue;
            }
            if KEY_NAMES.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                if let Some(first) = key {
                    return Err(Fatal::Input(format!(
                        "the header has two key columns: `{}` (column {}) and `{name}` \
                         (column {}); keep one. Accepted columns: {}",
                        names[first],
                        first + 1,
                        i + 1,
                        accepted_columns()
                    )));
                }
                key = Some(i);
                columns.push(None);
                continue;
            }
            match Field::from_header(name) {
                Some(field) => {
                    if let Some(first) = columns.iter().position(|c| *c == Some(field)) {
                        return Err(Fatal::Input(format!(
                            "the header names `{}` twice (columns {} and {}); keep one. \
                             Accepted columns: {}",
                            field.api_name(),
                            first + 1,
                            i + 1,
                            accepted_columns()
                        )));
                    }
                    columns.push(Some(field));
                }
                None => {
                    unknown.push((i, name.clone()));
                    columns.push(None);
                }
            }
        }

        if !unknown.is_empty() {
            let mut listed: Vec<String> = unknown
                .iter()
                .take(COLUMNS_LISTED)
                .map(|(i, name)| {
                    let shown = if name.is_empty() {
                        "an empty column name".to_string()
                    } else {
                        fields::quote(name)
                    };
                    match suggest(name) {
                        Some(s) => format!("{shown} (column {}; did you mean `{s}`?)", i + 1),
                        None => format!("{shown} (column {})", i + 1),
                    }
                })
                .collect();
            if unknown.len() > COLUMNS_LISTED {
                listed.push(format!("and {} more", unknown.len() - COLUMNS_LISTED));
            }
            return Err(Fatal::Input(format!(
                "unknown column{} in the header: {}; accepted columns: {}: rename or remove {}",
                if unknown.len() > 1 { "s" } else { "" },
                listed.join(", "),
                accepted_columns(),
                if unknown.len() > 1 { "them" } else { "it" }
            )));
        }
        let Some(key) = key else {
            return Err(Fatal::Input(format!(
                "the header has no key column: name one column client_id (or clientId, id); \
                 found: {}. Accepted columns: {}",
                names
                    .iter()
                    .take(COLUMNS_LISTED)
                    .map(|n| fields::quote(n))
                    .collect::<Vec<_>>()
                    .join(", "),
                accepted_columns()
            )));
        };
        Ok(Header {
            key,
            columns,
            names,
        })
    }

    /// The patch fields this input sets, in column order.
    pub fn fields(&self) -> Vec<Field> {
        self.columns.iter().flatten().copied().collect()
    }

    pub(crate) fn width(&self) -> usize {
        self.columns.len()
    }
}

/// Cell `i` of `record` as text. `whole` is the record as text when it all
/// is (then only the cell's ends need checking), else each cell is checked.
pub(crate) fn cell_text<'a>(
    whole: Option<&'a str>,
    record: &'a ByteRecord,
    i: usize,
) -> Result<&'a str, std::str::Utf8Error> {
    match whole
        .zip(record.range(i))
        .and_then(|(whole, range)| whole.get(range))
    {
        Some(text) => Ok(text),
        None => std::str::from_utf8(record.get(i).unwrap_or_default()),
    }
}

/// Trims a cell: `str::trim`, with a shortcut for the usual cell that starts
/// and ends with a visible ASCII character.
pub(crate) fn trim(cell: &str) -> &str {
    match (cell.as_bytes().first(), cell.as_bytes().last()) {
        (Some(&first), Some(&last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => cell,
        _ => cell.trim(),
    }
}

/// Every accepted column name, for error messages and `--help`.
pub fn accepted_columns() -> String {
    format!("client_id (or clientId, id), {}", patch_columns())
}

pub(crate) fn patch_columns() -> String {
    Field::ALL.map(Field::api_name).join(", ")
}

/// The accepted name closest to a mistyped one, when it is close.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    KEY_NAMES
        .into_iter()
        .chain(Field::ALL.map(Field::api_name))
        .map(|candidate| {
            (
                edit_distance(&lower, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(d, _)| *d <= 2 && *d < lower.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn too_many_columns(count: &str) -> Fatal {
    Fatal::Input(format!(
        "the header has {count} columns: an input has at most 9 (client_id and the patch \
         columns); check that this is the input file, comma-separated"
    ))
}
