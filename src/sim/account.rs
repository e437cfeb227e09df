//! The state the simulator keeps for one client account, the deterministic
//! generator that fills a simulator with varied accounts, and the rendering of
//! an account as Gcore's full `Client` JSON object.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One client account as the simulator stores it.
///
/// Field names follow the PATCH body (`companyName`, `reseller`), so an
/// account serialises the way a client would write it; [`Account::to_client_json`]
/// renders the API's own `Client` shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    pub email: String,
    #[serde(rename = "companyName")]
    pub company_name: String,
    pub custom_id: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// The reseller's id; the API returns it as `resellers`.
    pub reseller: u64,
    pub seller: Option<u64>,
    pub is_test: bool,
    /// One of `new`, `trial`, `trialend`, `active`, `integration`, `paused`,
    /// `preparation`, `ready`.
    pub status: String,
    /// One of `common`, `reseller`, `sales`.
    pub client_type: String,
    pub deleted: bool,
}

/// Resellers that generated accounts belong to; the first is the default owner.
pub const GENERATED_RESELLERS: [u64; 3] = [900_001, 900_002, 900_003];
/// Sellers that generated accounts may be assigned to.
pub const GENERATED_SELLERS: [u64; 4] = [51, 52, 53, 54];

const FIRST_NAMES: [&str; 12] = [
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Grace", "Hiro", "Inès", "Jonas", "Kateryna",
    "Luca",
];
const LAST_NAMES: [&str; 10] = [
    "Müller", "Smith", "Kowalski", "García", "Novak", "Rossi", "Dubois", "Jansen", "O'Brien",
    "Tanaka",
];
// A comma and an apostrophe among the company names keep CSV quoting honest.
const COMPANY_STEMS: [&str; 10] = [
    "Northwind",
    "Bluebird Media",
    "Acme, Inc.",
    "Kestrel Labs",
    "Polar Freight",
    "Café Lumière",
    "Ironbark",
    "Oak & Ash",
    "Sunday's Kitchen",
    "Vektor",
];
const COMPANY_SUFFIXES: [&str; 5] = ["GmbH", "Ltd", "S.A.", "LLC", "B.V."];
const COUNTRY_CODES: [&str; 8] = ["DE", "LU", "US", "GB", "NL", "FR", "CY", "PL"];
const SERVICES: [&str; 6] = ["CDN", "CLOUD", "DDOS", "DNS", "STORAGE", "STREAMING"];

impl Account {
    /// A deterministic, varied account for `id`.
    ///
    /// The same id always gives the same account (across runs and versions of
    /// the random-number crates: the mixing function is our own). Across ids
    /// the values vary the way real data does: some `custom_id`, `name`,
    /// `phone` and `seller` are null, about one in ten is a test account, one
    /// in twenty is deleted, and resellers, sellers and statuses differ.
    pub fn generated(id: u64) -> Account {
        let h = Mix(splitmix64(id));
        let status = match h.pick(0, 25) {
            0..=14 => "active",
            15..=17 => "trial",
            18 => "new",
            19 => "trialend",
            20 | 21 => "paused",
            22 => "preparation",
            23 => "ready",
            _ => "integration",
        };
        let client_type = match h.pick(5, 40) {
            0 => "sales",
            1 | 2 => "reseller",
            _ => "common",
        };
        let reseller = match h.pick(11, 9) {
            0..=5 => GENERATED_RESELLERS[0],
            6 | 7 => GENERATED_RESELLERS[1],
            _ => GENERATED_RESELLERS[2],
        };
        let seller = match h.pick(15, 6) {
            0 | 1 => None,
            n => Some(GENERATED_SELLERS[(n as usize - 2) % GENERATED_SELLERS.len()]),
        };
        let name = (h.pick(19, 6) != 0).then(|| {
            format!(
                "{} {}",
                FIRST_NAMES[h.pick(23, FIRST_NAMES.len() as u64) as usize],
                LAST_NAMES[h.pick(27, LAST_NAMES.len() as u64) as usize]
            )
        });
        let phone = (h.pick(31, 4) != 0).then(|| format!("+49 30 555 {:04}", id % 10_000));
        let custom_id = (h.pick(34, 5) != 0).then(|| format!("CRM-{id:06}"));
        let company_name = format!(
            "{} {}",
            COMPANY_STEMS[h.pick(38, COMPANY_STEMS.len() as u64) as usize],
            COMPANY_SUFFIXES[h.pick(42, COMPANY_SUFFIXES.len() as u64) as usize]
        );
        Account {
            id,
            email: format!("client{id}@example.com"),
            company_name,
            custom_id,
            name,
            phone,
            reseller,
            seller,
            is_test: h.pick(46, 10) == 0,
            status: status.to_owned(),
            client_type: client_type.to_owned(),
            deleted: h.pick(50, 20) == 0,
        }
    }

    /// The reseller account that owns the generated accounts: what
    /// `GET /iam/clients/me` answers unless a test sets another owner.
    pub fn default_owner() -> Account {
        Account {
            id: GENERATED_RESELLERS[0],
            email: "reseller@example.com".to_owned(),
            company_name: "Example Reseller GmbH".to_owned(),
            custom_id: None,
            name: Some("Reseller Admin".to_owned()),
            phone: Some("+352 20 880 000".to_owned()),
            reseller: 1,
            seller: None,
            is_test: false,
            status: "active".to_owned(),
            client_type: "reseller".to_owned(),
            deleted: false,
        }
    }

    /// The account as Gcore's `Client` object, with every field the reference
    /// lists. Fields the simulator does not store (website, capabilities,
    /// service statuses, features, billing, country) are derived from the id,
    /// so they stay the same across requests.
    pub fn to_client_json(&self) -> Value {
        serde_json::to_value(self.client_view()).unwrap_or(Value::Null)
    }

    /// The `Client` object as a borrowed, serialisable view: what responses
    /// are written from, without building a JSON tree first.
    pub(crate) fn client_view(&self) -> ClientView<'_> {
        let h = Mix(splitmix64(self.id ^ 0x5EED_0FC1_1E47));
        // CDN is every account's base service; the others come and go by id.
        let enabled: [bool; 6] = std::array::from_fn(|i| i == 0 || h.pick(i as u32 * 2, 3) == 0);
        let capabilities = SERVICES
            .iter()
            .zip(enabled)
            .filter_map(|(service, on)| on.then_some(*service))
            .collect();
        let service_status = match self.status.as_str() {
            "trial" => "trial",
            "trialend" => "trialend",
            "new" => "new",
            "paused" => "paused",
            _ => "active",
        };
        let status_of = |i: usize| ServiceStatus {
            status: if enabled[i] { service_status } else { "new" },
            enabled: enabled[i],
        };
        ClientView {
            id: self.id,
            users: [],
            email: &self.email,
            phone: self.phone.as_deref(),
            name: self.name.as_deref(),
            status: &self.status,
            company_name: &self.company_name,
            website: format!("https://www.client{}.example.com", self.id),
            current_user: 100_000 + self.id,
            capabilities,
            service_statuses: ServiceStatuses {
                cdn: status_of(0),
                cloud: status_of(1),
                ddos: status_of(2),
                dns: status_of(3),
                storage: status_of(4),
                streaming: status_of(5),
            },
            paid_features: PaidFeatures {
                cdn: (h.pick(14, 3) == 0).then(|| {
                    [Feature {
                        feature_id: 7,
                        name: "Image Stack",
                        service: "CDN",
                        create_date: "2024-03-18T09:12:44.000000Z",
                        paid_feature_id: Some(self.id * 10 + 7),
                        free_feature_id: None,
                    }]
                }),
            },
            free_features: FreeFeatures {
                cdn: [Feature {
                    feature_id: 1,
                    name: "Free SSL certificates",
                    service: "CDN",
                    create_date: "2023-11-02T14:03:10.000000Z",
                    paid_feature_id: None,
                    free_feature_id: Some(self.id * 10 + 1),
                }],
            },
            entry_base_domain: None,
            signup_process: match h.pick(16, 3) {
                0 => None,
                1 => Some("sign_up_simple"),
                _ => Some("sign_up_full"),
            },
            deleted: self.deleted,
            bill_type: if h.pick(18, 4) == 0 {
                "prepay"
            } else {
                "postpay"
            },
            custom_id: self.custom_id.as_deref(),
            country_code: COUNTRY_CODES[h.pick(20, COUNTRY_CODES.len() as u64) as usize],
            is_test: self.is_test,
            has_active_admin: !self.deleted
                && !matches!(self.status.as_str(), "new" | "preparation"),
            seller: self.seller,
            resellers: self.reseller,
            client_type: &self.client_type,
            owner: 100_000 + self.reseller,
        }
    }
}

/// Gcore's `Client` object, field for field, in the reference's order.
#[derive(Serialize)]
pub(crate) struct ClientView<'a> {
    id: u64,
    users: [(); 0],
    email: &'a str,
    phone: Option<&'a str>,
    name: Option<&'a str>,
    status: &'a str,
    #[serde(rename = "companyName")]
    company_name: &'a str,
    website: String,
    #[serde(rename = "currentUser")]
    current_user: u64,
    capabilities: Vec<&'static str>,
    #[serde(rename = "serviceStatuses")]
    service_statuses: ServiceStatuses,
    #[serde(rename = "paidFeatures")]
    paid_features: PaidFeatures,
    #[serde(rename = "freeFeatures")]
    free_features: FreeFeatures,
    #[serde(rename = "entryBaseDomain")]
    entry_base_domain: Option<&'static str>,
    signup_process: Option<&'static str>,
    deleted: bool,
    bill_type: &'static str,
    custom_id: Option<&'a str>,
    country_code: &'static str,
    is_test: bool,
    has_active_admin: bool,
    seller: Option<u64>,
    /// The reseller, under the API's plural name.
    resellers: u64,
    client_type: &'a str,
    owner: u64,
}

#[derive(Serialize)]
struct ServiceStatus {
    status: &'static str,
    enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct ServiceStatuses {
    cdn: ServiceStatus,
    cloud: ServiceStatus,
    ddos: ServiceStatus,
    dns: ServiceStatus,
    storage: ServiceStatus,
    streaming: ServiceStatus,
}

#[derive(Serialize)]
struct Feature {
    feature_id: u64,
    name: &'static str,
    service: &'static str,
    create_date: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid_feature_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    free_feature_id: Option<u64>,
}

#[derive(Serialize)]
struct PaidFeatures {
    #[serde(rename = "CDN", skip_serializing_if = "Option::is_none")]
    cdn: Option<[Feature; 1]>,
}

#[derive(Serialize)]
struct FreeFeatures {
    #[serde(rename = "CDN")]
    cdn: [Feature; 1],
}

/// SplitMix64: a tiny, well-mixing, fixed function, so generated accounts do
/// not change when a random-number crate changes its algorithm.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A mixed id whose bit ranges pick independent attributes.
#[derive(Clone, Copy)]
struct Mix(u64);

impl Mix {
    /// A value in `0..n` from the bits starting at `shift`.
    fn pick(self, shift: u32, n: u64) -> u64 {
        self.0.rotate_right(shift) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_accounts_are_deterministic() {
        assert_eq!(Account::generated(42), Account::generated(42));
        assert_ne!(Account::generated(42), Account::generated(43));
        assert_eq!(Account::generated(7).email, "client7@example.com");
    }

    #[test]
    fn generated_accounts_vary_like_real_data() {
        let accounts: Vec<Account> = (1..=200).map(Account::generated).collect();
        let count = |f: &dyn Fn(&Account) -> bool| accounts.iter().filter(|a| f(a)).count();
        assert!(count(&|a| a.custom_id.is_none()) > 0);
        assert!(count(&|a| a.custom_id.is_some()) > 0);
        assert!(count(&|a| a.name.is_none()) > 0);
        assert!(count(&|a| a.phone.is_none()) > 0);
        assert!(count(&|a| a.seller.is_none()) > 0);
        assert!(count(&|a| a.seller.is_some()) > 0);
        let tests = count(&|a| a.is_test);
        assert!(tests > 0 && tests < 60, "{tests} test accounts");
        assert!(count(&|a| a.deleted) > 0);
        for reseller in GENERATED_RESELLERS {
            assert!(
                count(&|a| a.reseller == reseller) > 0,
                "reseller {reseller}"
            );
        }
        for status in ["active", "trial", "new", "paused"] {
            assert!(count(&|a| a.status == status) > 0, "status {status}");
        }
        for client_type in ["common", "reseller", "sales"] {
            assert!(
                count(&|a| a.client_type == client_type) > 0,
                "client_type {client_type}"
            );
        }
    }

    #[test]
    fn client_json_has_every_documented_field() {
        let client = Account::generated(5).to_client_json();
        for field in [
            "id",
            "users",
            "email",
            "phone",
            "name",
            "status",
            "companyName",
            "website",
            "currentUser",
            "capabilities",
            "serviceStatuses",
            "paidFeatures",
            "freeFeatures",
            "entryBaseDomain",
            "signup_process",
            "deleted",
            "bill_type",
            "custom_id",
            "country_code",
            "is_test",
            "has_active_admin",
            "seller",
            "resellers",
            "client_type",
            "owner",
        ] {
            assert!(client.get(field).is_some(), "missing {field}");
        }
        assert!(client.get("reseller").is_none());
        assert_eq!(client["users"], json!([]));
    }

    #[test]
    fn client_json_names_the_reseller_resellers() {
        let mut account = Account::generated(5);
        account.reseller = 777;
        assert_eq!(account.to_client_json()["resellers"], json!(777));
    }

    #[test]
    fn account_serialises_with_patch_field_names() {
        let value = serde_json::to_value(Account::generated(3)).expect("account serialises");
        assert!(value.get("companyName").is_some());
        assert!(value.get("reseller").is_some());
    }
}
