//! The KYC data of a personal client and ConnectPay's documented rules for it (personal application v2).
//!
//! The gateway checks these rules itself before calling ConnectPay, so a caller learns of every invalid
//! field at once, by its path, and ConnectPay never sees an application it would refuse for its form.
//! `Debug` prints no values: this data must never reach a log.

use std::fmt;

use super::error::{Error, FieldViolation};

/// Fields the API does not model yet, passed through to ConnectPay as given.
pub type ExtraFields = serde_json::Map<String, serde_json::Value>;

/// Characters ConnectPay refuses in a PEP position.
const FORBIDDEN_IN_POSITION: &str = "~!@#$%^*()_+={}[]|:;\",<>/?";

/// KYC data as the caller sent it, before any check.
#[derive(Default, Clone)]
pub struct KycInput {
    pub is_ubo: Option<bool>,
    pub pep: Option<PepInput>,
    pub address: Option<AddressInput>,
    pub account_purposes: Vec<String>,
    pub additional_fields: ExtraFields,
}

#[derive(Default, Clone)]
pub struct PepInput {
    pub is_pep: Option<bool>,
    pub position: String,
}

#[derive(Default, Clone)]
pub struct AddressInput {
    pub country_code: String,
    pub address_line1: String,
    pub address_line2: String,
    pub city: String,
    pub postcode: String,
}

/// KYC data that satisfies every documented rule.
#[derive(Clone, PartialEq)]
pub struct PersonalKyc {
    pub is_ubo: bool,
    pub pep: Pep,
    pub address: Address,
    pub account_purposes: Vec<String>,
    pub additional_fields: ExtraFields,
}

#[derive(Clone, PartialEq)]
pub struct Pep {
    pub is_pep: bool,
    pub position: Option<String>,
}

#[derive(Clone, PartialEq)]
pub struct Address {
    /// Upper case ISO 3166-1 alpha-2.
    pub country_code: String,
    pub address_line1: String,
    pub address_line2: Option<String>,
    pub city: String,
    pub postcode: String,
}

impl KycInput {
    /// Checks every rule and reports every violation, each by its path under `prefix` (e.g. `kyc`).
    pub fn validate(self, prefix: &str) -> Result<PersonalKyc, Error> {
        let mut check = Checker {
            prefix,
            violations: Vec::new(),
        };
        let is_ubo = check.required(self.is_ubo, "is_ubo");
        let pep = match self.pep {
            None => {
                check.fail("pep", "is required");
                None
            }
            Some(pep) => check.pep(pep),
        };
        let address = match self.address {
            None => {
                check.fail("address", "is required");
                None
            }
            Some(address) => check.address(address),
        };
        for (i, purpose) in self.account_purposes.iter().enumerate() {
            check.length(&format!("account_purposes[{i}]"), purpose, 1, 100);
        }
        if self.additional_fields.keys().any(|k| k.trim().is_empty()) {
            check.fail("additional_fields", "field names must not be empty");
        }
        match (is_ubo, pep, address) {
            (Some(is_ubo), Some(pep), Some(address)) if check.violations.is_empty() => {
                Ok(PersonalKyc {
                    is_ubo,
                    pep,
                    address,
                    account_purposes: self.account_purposes,
                    additional_fields: self.additional_fields,
                })
            }
            _ => Err(Error::invalid_fields(check.violations)),
        }
    }
}

struct Checker<'a> {
    prefix: &'a str,
    violations: Vec<FieldViolation>,
}

impl Checker<'_> {
    fn fail(&mut self, field: &str, description: &str) {
        self.violations.push(FieldViolation::new(
            format!("{}.{field}", self.prefix),
            description,
        ));
    }

    fn required<T>(&mut self, value: Option<T>, field: &str) -> Option<T> {
        if value.is_none() {
            self.fail(field, "is required");
        }
        value
    }

    /// Lengths count characters, as ConnectPay's constraints do.
    fn length(&mut self, field: &str, value: &str, min: usize, max: usize) -> bool {
        let len = value.chars().count();
        if len == 0 && min > 0 {
            self.fail(field, "is required");
            false
        } else if len < min || len > max {
            self.fail(field, &format!("must be {min}-{max} characters long"));
            false
        } else {
            true
        }
    }

    fn pep(&mut self, pep: PepInput) -> Option<Pep> {
        let is_pep = self.required(pep.is_pep, "pep.is_pep");
        let position = if pep.position.is_empty() {
            if is_pep == Some(true) {
                self.fail("pep.position", "is required when pep.is_pep is true");
            }
            None
        } else {
            if self.length("pep.position", &pep.position, 1, 100) {
                if pep.position.chars().any(|c| c.is_ascii_digit()) {
                    self.fail("pep.position", "must not contain digits");
                }
                if pep
                    .position
                    .chars()
                    .any(|c| FORBIDDEN_IN_POSITION.contains(c))
                {
                    self.fail(
                        "pep.position",
                        &format!("must not contain any of {FORBIDDEN_IN_POSITION}"),
                    );
                }
            }
            Some(pep.position)
        };
        Some(Pep {
            is_pep: is_pep?,
            position,
        })
    }

    fn address(&mut self, address: AddressInput) -> Option<Address> {
        let country_code = address.country_code.to_ascii_uppercase();
        if address.country_code.is_empty() {
            self.fail("address.country_code", "is required");
        } else if COUNTRY_CODES.binary_search(&country_code.as_str()).is_err() {
            self.fail(
                "address.country_code",
                "must be an ISO 3166-1 alpha-2 country code",
            );
        }
        self.length("address.address_line1", &address.address_line1, 3, 100);
        let address_line2 = (!address.address_line2.is_empty()).then(|| {
            self.length("address.address_line2", &address.address_line2, 3, 100);
            address.address_line2
        });
        self.length("address.city", &address.city, 3, 100);
        self.length("address.postcode", &address.postcode, 1, 20);
        Some(Address {
            country_code,
            address_line1: address.address_line1,
            address_line2,
            city: address.city,
            postcode: address.postcode,
        })
    }
}

impl PersonalKyc {
    /// A canonical encoding of the whole content, for idempotency fingerprints (which are stored only as
    /// keyed hashes). Equal data always encodes equally: objects are written with sorted keys.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "isUbo": self.is_ubo,
            "isPep": self.pep.is_pep,
            "position": self.pep.position,
            "countryCode": self.address.country_code,
            "addressLine1": self.address.address_line1,
            "addressLine2": self.address.address_line2,
            "city": self.address.city,
            "postcode": self.address.postcode,
            "accountPurposes": self.account_purposes,
            "additionalFields": self.additional_fields,
        });
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        out
    }
}

fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).unwrap_or_default());
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($ty), " { <redacted> }"))
            }
        }
    )*};
}
redacted_debug!(KycInput, PepInput, AddressInput, PersonalKyc, Pep, Address);

/// ISO 3166-1 alpha-2, officially assigned codes, sorted for binary search.
const COUNTRY_CODES: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> KycInput {
        KycInput {
            is_ubo: Some(true),
            pep: Some(PepInput {
                is_pep: Some(false),
                position: String::new(),
            }),
            address: Some(AddressInput {
                country_code: "LT".into(),
                address_line1: "Gedimino pr. 1".into(),
                address_line2: String::new(),
                city: "Vilnius".into(),
                postcode: "01103".into(),
            }),
            account_purposes: vec!["SALARY".into()],
            additional_fields: ExtraFields::new(),
        }
    }

    fn violations(input: KycInput) -> Vec<String> {
        match input.validate("kyc") {
            Ok(_) => vec![],
            Err(e) => e
                .field_violations()
                .iter()
                .map(|v| v.field.clone())
                .collect(),
        }
    }

    #[test]
    fn the_documented_example_is_valid() {
        let kyc = valid().validate("kyc").unwrap();
        assert_eq!(kyc.address.address_line2, None);
        assert_eq!(kyc.pep.position, None);
    }

    #[test]
    fn every_rule_names_its_field() {
        type Break = fn(&mut KycInput);
        let cases: Vec<(Break, &str)> = vec![
            (|k| k.is_ubo = None, "kyc.is_ubo"),
            (|k| k.pep = None, "kyc.pep"),
            (|k| k.pep.as_mut().unwrap().is_pep = None, "kyc.pep.is_pep"),
            (
                |k| k.pep.as_mut().unwrap().is_pep = Some(true),
                "kyc.pep.position",
            ),
            (
                |k| k.pep.as_mut().unwrap().position = "Minister 2".into(),
                "kyc.pep.position",
            ),
            (
                |k| k.pep.as_mut().unwrap().position = "Minister (deputy)".into(),
                "kyc.pep.position",
            ),
            (
                |k| k.pep.as_mut().unwrap().position = "x".repeat(101),
                "kyc.pep.position",
            ),
            (|k| k.address = None, "kyc.address"),
            (
                |k| k.address.as_mut().unwrap().country_code = "LTU".into(),
                "kyc.address.country_code",
            ),
            (
                |k| k.address.as_mut().unwrap().country_code = "XX".into(),
                "kyc.address.country_code",
            ),
            (
                |k| k.address.as_mut().unwrap().country_code = String::new(),
                "kyc.address.country_code",
            ),
            (
                |k| k.address.as_mut().unwrap().address_line1 = "ab".into(),
                "kyc.address.address_line1",
            ),
            (
                |k| k.address.as_mut().unwrap().address_line1 = "a".repeat(101),
                "kyc.address.address_line1",
            ),
            (
                |k| k.address.as_mut().unwrap().address_line2 = "ab".into(),
                "kyc.address.address_line2",
            ),
            (
                |k| k.address.as_mut().unwrap().city = "Vi".into(),
                "kyc.address.city",
            ),
            (
                |k| k.address.as_mut().unwrap().postcode = String::new(),
                "kyc.address.postcode",
            ),
            (
                |k| k.address.as_mut().unwrap().postcode = "1".repeat(21),
                "kyc.address.postcode",
            ),
            (
                |k| k.account_purposes.push(String::new()),
                "kyc.account_purposes[1]",
            ),
        ];
        for (break_it, field) in cases {
            let mut input = valid();
            break_it(&mut input);
            assert_eq!(violations(input), vec![field.to_string()], "{field}");
        }
    }

    #[test]
    fn all_violations_are_reported_together() {
        let mut input = valid();
        input.is_ubo = None;
        input.address.as_mut().unwrap().city = String::new();
        input.address.as_mut().unwrap().postcode = String::new();
        assert_eq!(
            violations(input),
            ["kyc.is_ubo", "kyc.address.city", "kyc.address.postcode"]
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut input = valid();
        input.address.as_mut().unwrap().city = "Šėž".into();
        assert!(violations(input).is_empty());
    }

    #[test]
    fn country_codes_are_sorted_and_case_is_normalised() {
        assert!(COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]));
        let mut input = valid();
        input.address.as_mut().unwrap().country_code = "lt".into();
        assert_eq!(input.validate("kyc").unwrap().address.country_code, "LT");
    }

    #[test]
    fn canonical_bytes_tell_different_data_apart_and_ignore_key_order() {
        let a = valid().validate("kyc").unwrap();
        let mut b_input = valid();
        b_input.address.as_mut().unwrap().city = "Kaunas".into();
        let b = b_input.validate("kyc").unwrap();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let mut one = valid();
        one.additional_fields
            .insert("x".into(), serde_json::json!({"b": 1, "a": 2}));
        let mut two = valid();
        two.additional_fields
            .insert("x".into(), serde_json::json!({"a": 2, "b": 1}));
        assert_eq!(
            one.validate("kyc").unwrap().canonical_bytes(),
            two.validate("kyc").unwrap().canonical_bytes()
        );
    }

    #[test]
    fn debug_prints_no_values() {
        let printed = format!("{:?} {:?}", valid(), valid().validate("kyc").unwrap());
        assert!(
            !printed.contains("Vilnius") && !printed.contains("Gedimino"),
            "{printed}"
        );
    }
}
