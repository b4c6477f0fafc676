//! RG109: http routes that never receive a request (Istio's IST0130) and
//! matches that never fire (IST0131). Istio takes the first http route whose
//! match fits, so a route after one that matches everything is dead, and a
//! match that an earlier one repeats exactly is dead too.

use std::fmt::Write as _;

use crate::model::istio::{HttpMatch, HttpRoute};
use crate::model::{FieldPath, ObjectKey};
use crate::policy::{Code, Finding};

/// The findings about the `spec.http` routes of one VirtualService, in order.
pub(super) fn check(out: &mut Vec<Finding>, key: &ObjectKey, http: &[HttpRoute]) {
    let list = FieldPath::new("spec").key("http");
    // The first route that matches every request, and every match seen so far (route, index).
    let mut everything: Option<usize> = None;
    let mut seen: Vec<(usize, usize, &HttpMatch)> = Vec::new();
    for (i, route) in http.iter().enumerate() {
        if let Some(first) = everything {
            let message = format!(
                "{} is never used: {} before it matches every request; move it above {} or give {} a narrower match",
                named(&list.index(i), route),
                named(&list.index(first), &http[first]),
                list.index(first),
                list.index(first),
            );
            out.push(Finding::new(Code::RG109, key, list.index(i), message));
            continue;
        }
        if route.matches.is_empty() {
            everything = Some(i);
            continue;
        }
        for (j, m) in route.matches.iter().enumerate() {
            let earlier = seen.iter().find(|(_, _, e)| e.same_conditions(m));
            if let Some((ei, ej, _)) = earlier {
                let at = list.index(i).key("match").index(j);
                let first = list.index(*ei).key("match").index(*ej);
                let message = format!(
                    "{at} never fires: {first} matches exactly the same requests and comes first ({}); remove it or \
                     change its conditions",
                    named(&list.index(*ei), &http[*ei])
                );
                out.push(Finding::new(Code::RG109, key, at, message));
            } else {
                seen.push((i, j, m));
            }
        }
        if route.matches.iter().any(HttpMatch::matches_everything) {
            everything = Some(i);
        }
    }
}

/// `spec.http[1]` or `spec.http[1] ("canary")`.
fn named(path: &FieldPath, route: &HttpRoute) -> String {
    let mut text = path.to_string();
    if let Some(name) = route.name.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(text, " ({name:?})");
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Kind;
    use crate::model::istio::VirtualServiceSpec;

    fn run(http: Value) -> Vec<Finding> {
        let spec: VirtualServiceSpec = serde_json::from_value(json!({"http": http})).expect("spec");
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "shop".into(), name: "reviews".into() };
        let mut out = Vec::new();
        check(&mut out, &key, &spec.http);
        out
    }

    fn to(host: &str) -> Value {
        json!([{"destination": {"host": host}}])
    }

    #[test]
    fn a_route_after_one_without_a_match_is_never_used() {
        let found = run(json!([
            {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": to("reviews-v2")},
            {"name": "default", "route": to("reviews-v1")},
            {"name": "canary", "match": [{"uri": {"prefix": "/canary"}}], "route": to("reviews-v3")},
            {"route": to("reviews-v4")}
        ]));
        let summaries: Vec<String> = found.iter().map(Finding::summary).collect();
        assert_eq!(
            summaries,
            [
                "RG109 spec.http[2]: spec.http[2] (\"canary\") is never used: spec.http[1] (\"default\") before it \
                 matches every request; move it above spec.http[1] or give spec.http[1] a narrower match",
                "RG109 spec.http[3]: spec.http[3] is never used: spec.http[1] (\"default\") before it matches every \
                 request; move it above spec.http[1] or give spec.http[1] a narrower match",
            ]
        );
        assert!(found.iter().all(|f| f.severity == crate::policy::Severity::Warning));
    }

    #[test]
    fn a_prefix_slash_matches_everything_and_other_conditions_do_not() {
        let found = run(json!([
            {"match": [{"uri": {"prefix": "/"}, "name": "all"}], "route": to("a")},
            {"route": to("b")}
        ]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].path.as_str(), "spec.http[1]");
        // A catch-all among several matches still catches all.
        let found = run(json!([
            {"match": [{"uri": {"exact": "/x"}}, {}], "route": to("a")},
            {"route": to("b")}
        ]));
        assert_eq!(found.len(), 1, "{found:#?}");
        // Narrower matches leave the routes after them reachable.
        for narrow in [
            json!({"uri": {"prefix": "/api"}}),
            json!({"uri": {"prefix": "/"}, "headers": {"x": {"exact": "1"}}}),
            json!({"port": 8080}),
            json!({"sourceLabels": {"app": "web"}}),
            json!({"gateways": ["mesh"]}),
            json!({"method": {"exact": "GET"}}),
            json!({"uri": {"regex": "/.*"}}),
        ] {
            let found = run(json!([{"match": [narrow.clone()], "route": to("a")}, {"route": to("b")}]));
            assert!(found.is_empty(), "{narrow}: {found:#?}");
        }
    }

    #[test]
    fn a_match_an_earlier_one_repeats_exactly_never_fires() {
        let found = run(json!([
            {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/api"}}],
             "route": to("v2")},
            {"match": [{"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}, "name": "again"},
                       {"uri": {"prefix": "/api"}}],
             "route": to("v3")},
            {"route": to("v1")}
        ]));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].summary(),
            "RG109 spec.http[1].match[0]: spec.http[1].match[0] never fires: spec.http[0].match[0] matches exactly \
             the same requests and comes first (spec.http[0] (\"jason\")); remove it or change its conditions"
        );
        // Different values, ports or source labels are different matches.
        let found = run(json!([
            {"match": [{"uri": {"prefix": "/api"}, "port": 80}], "route": to("v2")},
            {"match": [{"uri": {"prefix": "/api"}, "port": 81}], "route": to("v3")},
            {"match": [{"uri": {"prefix": "/api"}, "ignoreUriCase": true}], "route": to("v3")}
        ]));
        assert!(found.is_empty(), "{found:#?}");
    }
}
