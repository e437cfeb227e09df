//! `GET /iam/clients`: its query parameters (filters, ordering, `limit`/`offset`),
//! the selection of accounts, and the links between pages.
//!
//! Without `limit` the API answers a plain JSON array of every match; with it,
//! `{"count", "next", "previous", "results"}` (DRF's limit/offset pagination).

use std::collections::BTreeMap;

use super::account::Account;

/// A parsed, valid `GET /iam/clients` query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientQuery {
    pub reseller_id: Option<u64>,
    pub seller_id: Option<u64>,
    pub is_test: Option<bool>,
    pub client_type: Option<String>,
    pub email: Option<String>,
    pub custom_id: Option<String>,
    pub deleted: Option<bool>,
    pub descending: bool,
    pub page: Option<Page>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: u64,
    pub offset: u64,
}

/// Parameter name → messages, answered as `{"errors": {...}}` with a 400.
pub(crate) type QueryErrors = BTreeMap<String, Vec<String>>;

const CLIENT_TYPES: [&str; 3] = ["common", "reseller", "sales"];

/// Reads the decoded query pairs. A repeated parameter keeps its last value
/// and an empty value counts as absent (both as Django does). Unknown
/// parameters are ignored.
pub(crate) fn parse_query(pairs: &[(String, String)]) -> Result<ClientQuery, QueryErrors> {
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in pairs {
        if !value.is_empty() {
            latest.insert(key, value);
        }
    }
    let mut errors = QueryErrors::new();
    let mut fail = |key: &str, message: String| {
        errors.entry(key.to_owned()).or_default().push(message);
    };
    let mut query = ClientQuery::default();

    for (key, slot) in [
        ("reseller_id", &mut query.reseller_id),
        ("seller_id", &mut query.seller_id),
    ] {
        if let Some(value) = latest.get(key) {
            match value.parse::<u64>() {
                Ok(id) => *slot = Some(id),
                Err(_) => fail(key, "Enter a number.".to_owned()),
            }
        }
    }
    if let Some(value) = latest.get("is_test") {
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => query.is_test = Some(true),
            "false" | "0" => query.is_test = Some(false),
            _ => fail("is_test", "Must be a valid boolean.".to_owned()),
        }
    }
    if let Some(value) = latest.get("client_type") {
        if CLIENT_TYPES.contains(value) {
            query.client_type = Some((*value).to_owned());
        } else {
            fail(
                "client_type",
                format!("Select a valid choice. {value} is not one of the available choices."),
            );
        }
    }
    query.email = latest.get("email").map(|v| (*v).to_owned());
    query.custom_id = latest.get("custom_id").map(|v| (*v).to_owned());
    // The spec: `true` only deleted, `false` only live, any other value all.
    query.deleted = match latest.get("deleted").copied() {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    // Only ordering by id is simulated; DRF ignores fields it cannot order by.
    query.descending = latest.get("ordering").is_some_and(|ordering| {
        ordering
            .split(',')
            .map(str::trim)
            .find(|term| *term == "id" || *term == "-id")
            == Some("-id")
    });

    if let Some(limit) = latest.get("limit") {
        let offset = match latest.get("offset") {
            None => Ok(0),
            Some(offset) => parse_count(offset, 0),
        };
        match (parse_count(limit, 1), offset) {
            (Ok(limit), Ok(offset)) => query.page = Some(Page { limit, offset }),
            (limit, offset) => {
                if let Err(message) = limit {
                    fail("limit", message);
                }
                if let Err(message) = offset {
                    fail("offset", message);
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(query)
    } else {
        Err(errors)
    }
}

fn parse_count(text: &str, least: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= least => Ok(n),
        Ok(_) => Err(format!(
            "Ensure this value is greater than or equal to {least}."
        )),
        Err(_) if text.parse::<i64>().is_ok() => Err(format!(
            "Ensure this value is greater than or equal to {least}."
        )),
        Err(_) => Err("A valid integer is required.".to_owned()),
    }
}

impl ClientQuery {
    fn matches(&self, account: &Account) -> bool {
        self.reseller_id.is_none_or(|id| account.reseller == id)
            && self.seller_id.is_none_or(|id| account.seller == Some(id))
            && self.is_test.is_none_or(|t| account.is_test == t)
            && self
                .client_type
                .as_ref()
                .is_none_or(|t| account.client_type == *t)
            && self
                .email
                .as_ref()
                .is_none_or(|e| account.email.eq_ignore_ascii_case(e))
            && self
                .custom_id
                .as_ref()
                .is_none_or(|c| account.custom_id.as_ref() == Some(c))
            && self.deleted.is_none_or(|d| account.deleted == d)
    }

    /// The number of matches and the accounts on the requested page (all of
    /// them without `limit`). `accounts` must come in ascending id order.
    pub fn select<'a>(
        &self,
        accounts: impl DoubleEndedIterator<Item = &'a Account>,
    ) -> (usize, Vec<Account>) {
        let matching: Box<dyn Iterator<Item = &Account>> = if self.descending {
            Box::new(accounts.rev().filter(|a| self.matches(a)))
        } else {
            Box::new(accounts.filter(|a| self.matches(a)))
        };
        match self.page {
            None => {
                let all: Vec<Account> = matching.cloned().collect();
                (all.len(), all)
            }
            Some(page) => {
                let (mut count, mut results) = (0usize, Vec::new());
                for account in matching {
                    let position = count as u64;
                    if position >= page.offset && position < page.offset.saturating_add(page.limit)
                    {
                        results.push(account.clone());
                    }
                    count += 1;
                }
                (count, results)
            }
        }
    }
}

/// The `next` and `previous` links of a page, as DRF builds them: the request's
/// own URL with `limit` and `offset` replaced (`offset` dropped on the first page).
pub(crate) fn page_links(
    base: &str,
    raw_query: &str,
    page: Page,
    count: usize,
) -> (Option<String>, Option<String>) {
    let count = count as u64;
    let link = |offset: u64| {
        let mut params: Vec<String> = raw_query
            .split('&')
            .filter(|segment| {
                let key = segment.split('=').next().unwrap_or_default();
                !segment.is_empty() && key != "limit" && key != "offset"
            })
            .map(str::to_owned)
            .collect();
        params.push(format!("limit={}", page.limit));
        if offset > 0 {
            params.push(format!("offset={offset}"));
        }
        format!("{base}?{}", params.join("&"))
    };
    let next_offset = page.offset.saturating_add(page.limit);
    let next = (next_offset < count).then(|| link(next_offset));
    let previous = (page.offset > 0).then(|| link(page.offset.saturating_sub(page.limit)));
    (next, previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn parses_filters_and_pages() {
        let query = parse_query(&pairs(
            "reseller_id=5&seller_id=6&is_test=true&client_type=common&email=a@b.co\
             &custom_id=X&deleted=false&ordering=-id&limit=10&offset=20&unknown=1",
        ))
        .expect("valid query");
        assert_eq!(
            query,
            ClientQuery {
                reseller_id: Some(5),
                seller_id: Some(6),
                is_test: Some(true),
                client_type: Some("common".into()),
                email: Some("a@b.co".into()),
                custom_id: Some("X".into()),
                deleted: Some(false),
                descending: true,
                page: Some(Page {
                    limit: 10,
                    offset: 20
                }),
            }
        );
    }

    #[test]
    fn bad_values_are_reported_by_parameter() {
        let errors = parse_query(&pairs(
            "limit=ten&offset=-1&reseller_id=x&is_test=maybe&client_type=vip",
        ))
        .expect_err("invalid query");
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["client_type", "is_test", "limit", "offset", "reseller_id"]
        );
        assert!(parse_query(&pairs("limit=0")).is_err());
    }

    #[test]
    fn offset_without_limit_is_not_paging() {
        let query = parse_query(&pairs("offset=5")).expect("valid query");
        assert_eq!(query.page, None);
    }

    #[test]
    fn other_deleted_values_mean_all() {
        let query = parse_query(&pairs("deleted=maybe")).expect("valid query");
        assert_eq!(query.deleted, None);
    }

    #[test]
    fn selects_a_page_in_order() {
        let accounts: Vec<Account> = (1..=10).map(Account::generated).collect();
        let query = ClientQuery {
            descending: true,
            page: Some(Page {
                limit: 3,
                offset: 3,
            }),
            ..ClientQuery::default()
        };
        let (count, page) = query.select(accounts.iter());
        assert_eq!(count, 10);
        let ids: Vec<u64> = page.iter().map(|a| a.id).collect();
        assert_eq!(ids, [7, 6, 5]);
    }

    #[test]
    fn links_keep_other_parameters() {
        let page = Page {
            limit: 2,
            offset: 2,
        };
        let (next, previous) = page_links(
            "http://h/iam/clients",
            "is_test=true&limit=2&offset=2",
            page,
            5,
        );
        assert_eq!(
            next.as_deref(),
            Some("http://h/iam/clients?is_test=true&limit=2&offset=4")
        );
        assert_eq!(
            previous.as_deref(),
            Some("http://h/iam/clients?is_test=true&limit=2")
        );
        let last = Page {
            limit: 2,
            offset: 4,
        };
        assert_eq!(
            page_links("http://h/x", "limit=2&offset=4", last, 5).0,
            None
        );
    }
}
