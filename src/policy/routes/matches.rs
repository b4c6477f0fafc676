//! RG106: the match conditions of `spec.http[].match[]` and the allowed
//! origins of `spec.http[].corsPolicy.allowOrigins[]`, both Istio StringMatches.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::model::istio::{HttpMatch, StringMatch};
use crate::model::{FieldPath, ObjectKey};
use crate::policy::{Code, Finding};

/// Istio's limit on a regex, in characters (Envoy's RE2 program size is bounded by the length).
const MAX_REGEX_LEN: usize = 1024;

/// Checks StringMatches (match conditions and CORS origins), compiling every
/// distinct regex once.
#[derive(Debug)]
pub(super) struct Matches<'s> {
    /// Regexes already compiled in this call: `None` when the regex compiled, else why not.
    regexes: HashMap<&'s str, Option<String>>,
}

/// The thing a StringMatch matches, for messages.
#[derive(Debug, Clone, Copy)]
enum Subject<'s> {
    Field(&'static str),
    Header(&'s str),
    QueryParam(&'s str),
    WithoutHeader(&'s str),
    /// An entry of `corsPolicy.allowOrigins`, named by its full path: its
    /// index alone would not say which route it belongs to.
    Origin(&'s FieldPath),
}

impl Subject<'_> {
    /// Header and query parameter conditions may be `{}`: a presence match.
    fn allows_presence(self) -> bool {
        !matches!(self, Subject::Field(_) | Subject::Origin(_))
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Field(name) => f.write_str(name),
            Subject::Header(name) => write!(f, "header \"{name}\""),
            Subject::QueryParam(name) => write!(f, "query parameter \"{name}\""),
            Subject::WithoutHeader(name) => write!(f, "withoutHeaders header \"{name}\""),
            Subject::Origin(path) => write!(f, "{path}"),
        }
    }
}

impl<'s> Matches<'s> {
    pub(super) fn new() -> Matches<'s> {
        Matches { regexes: HashMap::new() }
    }

    /// Checks one `match` entry at `at` (`spec.http[0].match[0]`).
    pub(super) fn check(&mut self, out: &mut Vec<Finding>, key: &ObjectKey, at: &FieldPath, m: &'s HttpMatch) {
        let fields = [("uri", &m.uri), ("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)];
        for (name, value) in fields {
            if let Some(sm) = value {
                self.string_match(out, key, &at.key(name), Subject::Field(name), sm);
            }
        }
        self.map(out, key, at, "headers", &m.headers, Subject::Header);
        self.map(out, key, at, "queryParams", &m.query_params, Subject::QueryParam);
        self.map(out, key, at, "withoutHeaders", &m.without_headers, Subject::WithoutHeader);
    }

    /// Checks `corsPolicy.allowOrigins` of the http route at `at` (`spec.http[0]`):
    /// Istio refuses an origin that is not a valid StringMatch as it refuses a bad match.
    pub(super) fn cors_origins(
        &mut self,
        out: &mut Vec<Finding>,
        key: &ObjectKey,
        at: &FieldPath,
        origins: &'s [StringMatch],
    ) {
        if origins.is_empty() {
            return;
        }
        let base = at.key("corsPolicy").key("allowOrigins");
        for (j, sm) in origins.iter().enumerate() {
            let path = base.index(j);
            self.string_match(out, key, &path, Subject::Origin(&path), sm);
        }
    }

    /// The named conditions of `field` (`headers`, `queryParams` or `withoutHeaders`) of the match at `at`.
    fn map(
        &mut self,
        out: &mut Vec<Finding>,
        key: &ObjectKey,
        at: &FieldPath,
        field: &str,
        map: &'s BTreeMap<String, StringMatch>,
        subject: fn(&'s str) -> Subject<'s>,
    ) {
        if map.is_empty() {
            return;
        }
        let base = at.key(field);
        for (name, sm) in map {
            let path = base.key(name);
            let subject = subject(name);
            // Istio rejects header names that are not lowercase; query parameters are case-sensitive.
            if !matches!(subject, Subject::QueryParam(_)) && name.chars().any(char::is_uppercase) {
                out.push(Finding::new(
                    Code::RG106,
                    key,
                    path.clone(),
                    format!("header name \"{name}\" is not lowercase, expected \"{}\"", name.to_lowercase()),
                ));
            }
            self.string_match(out, key, &path, subject, sm);
        }
    }

    /// One StringMatch: exactly one of exact, prefix, regex; no empty prefix or regex; a valid regex.
    fn string_match(
        &mut self,
        out: &mut Vec<Finding>,
        key: &ObjectKey,
        at: &FieldPath,
        subject: Subject<'_>,
        sm: &'s StringMatch,
    ) {
        let kinds = [("exact", sm.exact.is_some()), ("prefix", sm.prefix.is_some()), ("regex", sm.regex.is_some())];
        let count = kinds.iter().filter(|(_, on)| *on).count();
        if count == 0 && !subject.allows_presence() {
            out.push(Finding::new(
                Code::RG106,
                key,
                at.clone(),
                format!("{subject} sets none of exact, prefix, regex; expected exactly one"),
            ));
        } else if count > 1 {
            let set: Vec<&str> = kinds.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
            let (last, rest) = set.split_last().map_or(("", &[][..]), |(l, r)| (*l, r));
            out.push(Finding::new(
                Code::RG106,
                key,
                at.clone(),
                format!("{subject} sets {} and {last}, expected exactly one of exact, prefix, regex", rest.join(", ")),
            ));
        }
        if sm.prefix.as_deref() == Some("") {
            let hint = match subject {
                Subject::Field("uri") => " (prefix \"/\" matches every path)",
                Subject::Field(_) | Subject::Origin(_) => "",
                _ => " (use {} to match any value)",
            };
            out.push(Finding::new(
                Code::RG106,
                key,
                at.key("prefix"),
                format!("{subject} has an empty prefix, expected a non-empty prefix{hint}"),
            ));
        }
        if let Some(re) = sm.regex.as_deref() {
            self.regex(out, key, &at.key("regex"), subject, re);
        }
    }

    fn regex(&mut self, out: &mut Vec<Finding>, key: &ObjectKey, at: &FieldPath, subject: Subject<'_>, re: &'s str) {
        if re.is_empty() {
            out.push(Finding::new(
                Code::RG106,
                key,
                at.clone(),
                format!("{subject} has an empty regex, expected a pattern"),
            ));
            return;
        }
        let len = re.chars().count();
        if len > MAX_REGEX_LEN {
            // Too long for Istio whatever it contains: not worth compiling.
            out.push(Finding::new(
                Code::RG106,
                key,
                at.clone(),
                format!("regex of {subject} is {len} characters long, expected at most {MAX_REGEX_LEN}"),
            ));
            return;
        }
        let error = self.regexes.entry(re).or_insert_with(|| regex::Regex::new(re).err().map(|e| describe(&e)));
        if let Some(error) = error {
            out.push(Finding::new(
                Code::RG106,
                key,
                at.clone(),
                format!("regex \"{re}\" of {subject} does not compile: {error}"),
            ));
        }
    }
}

/// A one-line, lowercase reason from a regex error (syntax errors span several lines).
fn describe(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid syntax");
            line.strip_prefix("error: ").unwrap_or(line).to_string()
        }
        regex::Error::CompiledTooBig(limit) => format!("the compiled regex exceeds the size limit of {limit} bytes"),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::Kind;

    fn run(matches: Value) -> Vec<Finding> {
        let matches: Vec<HttpMatch> = serde_json::from_value(matches).expect("matches");
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "default".into(), name: "r".into() };
        let base = FieldPath::new("spec").key("http").index(0).key("match");
        let mut checker = Matches::new();
        let mut out = Vec::new();
        for (j, m) in matches.iter().enumerate() {
            checker.check(&mut out, &key, &base.index(j), m);
        }
        out
    }

    fn one(matches: Value) -> Finding {
        let mut found = run(matches);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = found.remove(0);
        assert_eq!(f.code, Code::RG106);
        f
    }

    #[test]
    fn allows_valid_matches() {
        let found = run(json!([
            {"uri": {"prefix": "/api"}, "method": {"exact": "GET"}, "scheme": {"regex": "https?"},
             "authority": {"exact": "a.example.com"},
             "headers": {"x-dark-launch": {}, "end-user": {"exact": "jason"}, "x-id": {"regex": "[0-9]+"}},
             "queryParams": {"Debug": {}}, "withoutHeaders": {"x-canary": {"prefix": "t"}}},
            {"uri": {"regex": "/v[0-9]+/.*"}, "headers": {"x-id": {"regex": "[0-9]+"}}}
        ]));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn refuses_a_match_without_a_kind_or_with_several() {
        let f = one(json!([{"uri": {}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[0].uri");
        assert_eq!(f.message, "uri sets none of exact, prefix, regex; expected exactly one");

        let f = one(json!([{}, {"method": {"exact": "GET", "prefix": "G", "regex": "G.*"}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[1].method");
        assert_eq!(f.message, "method sets exact, prefix and regex, expected exactly one of exact, prefix, regex");

        let f = one(json!([{"queryParams": {"id": {"exact": "1", "regex": "1"}}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[0].queryParams.id");
        assert_eq!(
            f.message,
            "query parameter \"id\" sets exact and regex, expected exactly one of exact, prefix, regex"
        );
    }

    #[test]
    fn refuses_empty_prefixes_and_regexes() {
        let f = one(json!([{"uri": {"prefix": ""}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[0].uri.prefix");
        assert_eq!(f.message, "uri has an empty prefix, expected a non-empty prefix (prefix \"/\" matches every path)");

        let f = one(json!([{"headers": {"x-dark-launch": {"prefix": ""}}}]));
        let header = FieldPath::new("spec.http[0].match[0].headers").key("x-dark-launch");
        assert_eq!(f.path, header.key("prefix"));
        assert_eq!(
            f.message,
            "header \"x-dark-launch\" has an empty prefix, expected a non-empty prefix (use {} to match any value)"
        );

        let f = one(json!([{"authority": {"regex": ""}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[0].authority.regex");
        assert_eq!(f.message, "authority has an empty regex, expected a pattern");
    }

    #[test]
    fn refuses_regexes_that_do_not_compile_or_are_too_long() {
        let f = one(json!([{"headers": {"x-user": {"regex": "(unclosed"}}}]));
        assert_eq!(f.path, FieldPath::new("spec.http[0].match[0].headers").key("x-user").key("regex"));
        assert_eq!(f.message, "regex \"(unclosed\" of header \"x-user\" does not compile: unclosed group");

        let long = "a".repeat(1025);
        let f = one(json!([{"uri": {"regex": long}}]));
        assert_eq!(f.path.as_str(), "spec.http[0].match[0].uri.regex");
        assert_eq!(f.message, "regex of uri is 1025 characters long, expected at most 1024");
        assert!(run(json!([{"uri": {"regex": "a".repeat(1024)}}])).is_empty());
    }

    #[test]
    fn reports_a_repeated_bad_regex_at_every_use_but_compiles_it_once() {
        let found = run(json!([{"uri": {"regex": "a)"}, "withoutHeaders": {"x": {"regex": "a)"}}}]));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path.as_str(), "spec.http[0].match[0].uri.regex");
        assert_eq!(found[1].path, FieldPath::new("spec.http[0].match[0].withoutHeaders").key("x").key("regex"));
        assert_eq!(found[1].message, "regex \"a)\" of withoutHeaders header \"x\" does not compile: unopened group");

        let matches: Vec<HttpMatch> =
            serde_json::from_value(json!([{"uri": {"regex": "a+"}}, {"uri": {"regex": "a+"}}])).expect("matches");
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "default".into(), name: "r".into() };
        let mut checker = Matches::new();
        for m in &matches {
            checker.check(&mut Vec::new(), &key, &FieldPath::new("m"), m);
        }
        assert_eq!(checker.regexes.len(), 1);
    }

    /// The findings about `origins` as the `corsPolicy.allowOrigins` of `spec.http[1]`.
    fn origins(origins: Value) -> Vec<Finding> {
        let origins: Vec<StringMatch> = serde_json::from_value(origins).expect("origins");
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "default".into(), name: "r".into() };
        let mut out = Vec::new();
        Matches::new().cors_origins(&mut out, &key, &FieldPath::new("spec.http[1]"), &origins);
        out
    }

    fn one_origin(list: Value) -> Finding {
        let mut found = origins(list);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = found.remove(0);
        assert_eq!(f.code, Code::RG106);
        f
    }

    #[test]
    fn allows_valid_cors_origins() {
        let found = origins(json!([
            {"exact": "https://example.com"}, {"prefix": "https://"},
            {"regex": "https://.*\\.example\\.com"}, {"regex": "a".repeat(1024)}
        ]));
        assert!(found.is_empty(), "{found:?}");
        assert!(origins(json!([])).is_empty());
    }

    #[test]
    fn refuses_cors_origin_regexes_that_are_empty_too_long_or_do_not_compile() {
        let f = one_origin(json!([{"exact": "https://example.com"}, {"regex": "https://(a|b"}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[1].regex");
        assert_eq!(
            f.message,
            "regex \"https://(a|b\" of spec.http[1].corsPolicy.allowOrigins[1] does not compile: unclosed group"
        );

        // RE2 has no look-around, so Istio refuses it; so does the regex crate.
        let f = one_origin(json!([{"regex": "https://(?!evil).*"}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0].regex");
        assert_eq!(
            f.message,
            "regex \"https://(?!evil).*\" of spec.http[1].corsPolicy.allowOrigins[0] does not compile: \
             look-around, including look-ahead and look-behind, is not supported"
        );

        let f = one_origin(json!([{"regex": ""}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0].regex");
        assert_eq!(f.message, "spec.http[1].corsPolicy.allowOrigins[0] has an empty regex, expected a pattern");

        let f = one_origin(json!([{"regex": "a".repeat(1025)}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0].regex");
        assert_eq!(
            f.message,
            "regex of spec.http[1].corsPolicy.allowOrigins[0] is 1025 characters long, expected at most 1024"
        );
    }

    #[test]
    fn refuses_cors_origins_without_exactly_one_kind() {
        // Unlike a header condition, an origin has no presence match: `{}` is refused.
        let f = one_origin(json!([{}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0]");
        assert_eq!(
            f.message,
            "spec.http[1].corsPolicy.allowOrigins[0] sets none of exact, prefix, regex; expected exactly one"
        );

        let f = one_origin(json!([{"exact": "https://a.example.com", "regex": "https://.*"}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0]");
        assert_eq!(
            f.message,
            "spec.http[1].corsPolicy.allowOrigins[0] sets exact and regex, expected exactly one of exact, prefix, regex"
        );

        let f = one_origin(json!([{"prefix": ""}]));
        assert_eq!(f.path.as_str(), "spec.http[1].corsPolicy.allowOrigins[0].prefix");
        assert_eq!(
            f.message,
            "spec.http[1].corsPolicy.allowOrigins[0] has an empty prefix, expected a non-empty prefix"
        );
    }

    #[test]
    fn cors_origins_share_the_compile_once_cache_with_matches() {
        let matches: Vec<HttpMatch> = serde_json::from_value(json!([{"uri": {"regex": "a)"}}])).expect("matches");
        let origins: Vec<StringMatch> =
            serde_json::from_value(json!([{"regex": "a)"}, {"regex": "https://.*"}])).expect("origins");
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "default".into(), name: "r".into() };
        let mut checker = Matches::new();
        let mut out = Vec::new();
        checker.check(&mut out, &key, &FieldPath::new("spec.http[0].match[0]"), &matches[0]);
        checker.cors_origins(&mut out, &key, &FieldPath::new("spec.http[0]"), &origins);
        assert_eq!(checker.regexes.len(), 2);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].path.as_str(), "spec.http[0].corsPolicy.allowOrigins[0].regex");
        assert_eq!(
            out[1].message,
            "regex \"a)\" of spec.http[0].corsPolicy.allowOrigins[0] does not compile: unopened group"
        );
    }

    #[test]
    fn refuses_uppercase_header_names_but_not_query_parameters() {
        let f = one(json!([{"headers": {"X-Dark-Launch": {"exact": "1"}}, "queryParams": {"Page": {"exact": "1"}}}]));
        assert_eq!(f.path, FieldPath::new("spec.http[0].match[0].headers").key("X-Dark-Launch"));
        assert_eq!(f.message, "header name \"X-Dark-Launch\" is not lowercase, expected \"x-dark-launch\"");

        let f = one(json!([{"withoutHeaders": {"X-Canary": {}}}]));
        assert_eq!(f.path, FieldPath::new("spec.http[0].match[0].withoutHeaders").key("X-Canary"));
    }
}
