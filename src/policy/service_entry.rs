//! ServiceEntry rules: hosts Istio refuses (RG104).

use crate::model::istio::ServiceEntrySpec;
use crate::model::{FieldPath, ObjectKey};

use super::{Code, Finding};

/// RG104: a ServiceEntry host `*` declares every host, which istiod refuses;
/// routeguard does not count it as declaring anything either.
pub fn check_service_entry(key: &ObjectKey, spec: &ServiceEntrySpec) -> Vec<Finding> {
    let hosts = FieldPath::new("spec").key("hosts");
    spec.hosts
        .iter()
        .enumerate()
        .filter(|(_, host)| host.as_str() == "*")
        .map(|(i, _)| {
            Finding::new(
                Code::RG104,
                key,
                hosts.index(i),
                "host \"*\" is not a valid istio host: istiod refuses a serviceentry for every host; \
                 expected a host name or a wildcard with a suffix such as \"*.example.com\""
                    .to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn key() -> ObjectKey {
        ObjectKey { kind: Kind::ServiceEntry, namespace: "shop".into(), name: "all".into() }
    }

    #[test]
    fn a_bare_star_host_is_refused_and_suffix_wildcards_are_not() {
        let spec = ServiceEntrySpec {
            hosts: vec!["api.example.com".into(), "*".into(), "*.example.com".into()],
            export_to: vec![".".into()],
        };
        let found = check_service_entry(&key(), &spec);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].summary(),
            "RG104 spec.hosts[1]: host \"*\" is not a valid istio host: istiod refuses a serviceentry for every \
             host; expected a host name or a wildcard with a suffix such as \"*.example.com\""
        );
        let spec = ServiceEntrySpec { hosts: vec!["*.example.com".into()], export_to: vec![] };
        assert!(check_service_entry(&key(), &spec).is_empty());
    }
}
