//! Route weights, shared by VirtualService and HTTPRoute rules: the sum of a
//! route's weights (RG101) and weights that send no traffic (RG102).

use std::fmt::Write as _;

use crate::model::{FieldPath, ObjectKey};
use crate::policy::{Code, Finding, WeightMode};

/// What the weighted entries of one route are called, and how a missing weight counts.
#[derive(Debug, Clone, Copy)]
pub(in crate::policy) struct Weighted {
    /// `destination` or `backendRef`, for messages.
    pub item: &'static str,
    /// The weight an entry without one gets when there are several:
    /// 0 for Istio, 1 for the Gateway API.
    pub missing: i64,
    /// The Gateway API's weights: relative even for a lone entry (any weight
    /// above 0 takes all traffic, 0 takes none), and filled in with 1 by the
    /// API server before admission, so a weight of 1 may be an omitted one.
    /// Istio's lone destination takes all traffic whatever its weight says.
    pub relative: bool,
}

/// Checks the weights of one route: `list` is the path of the list
/// (`spec.http[0].route`), `weights` the weight of each entry as written.
pub(in crate::policy) fn check<I>(
    out: &mut Vec<Finding>,
    mode: WeightMode,
    key: &ObjectKey,
    list: &FieldPath,
    what: Weighted,
    weights: I,
) where
    I: ExactSizeIterator<Item = Option<i64>> + Clone,
{
    let count = weights.len();
    for (j, weight) in weights.clone().enumerate() {
        if let Some(w) = weight.filter(|w| *w < 0) {
            out.push(Finding::new(
                Code::RG102,
                key,
                list.index(j).key("weight"),
                format!("weight of {list}[{j}] is {w}, expected 0 or more"),
            ));
        }
    }
    // Istio and the Gateway API both refuse a split in which nothing gets
    // traffic; for the Gateway API a lone backendRef of weight 0 is one.
    let lone_counts = what.relative && count == 1;
    let nothing = (count > 1 || lone_counts) && weights.clone().all(|w| w.unwrap_or(what.missing) == 0);
    if nothing && (what.relative || mode == WeightMode::Relative) {
        out.push(no_traffic(key, list, what, count));
        return;
    }
    if mode == WeightMode::Sum100 && !lone_counts {
        sum_100(out, key, list, what, weights, count);
    }
}

/// RG102: every weight of the route is 0.
fn no_traffic(key: &ObjectKey, list: &FieldPath, what: Weighted, count: usize) -> Finding {
    let item = what.item;
    if count == 1 {
        let message = format!(
            "weight of the only {item} in {list} is 0, so it would receive no traffic; expected a weight above 0 \
             (or no weight)"
        );
        return Finding::new(Code::RG102, key, list.index(0).key("weight"), message);
    }
    let message = format!(
        "all weights of {list} are 0, so no {item} would receive traffic; expected at least one weight above 0"
    );
    Finding::new(Code::RG102, key, list.clone(), message)
}

/// RG101: the weights of a route with several entries sum to 100; a lone
/// Istio destination has no weight or 100 (a lone Gateway API backendRef is
/// never judged here: any weight above 0 sends it all traffic).
fn sum_100<I>(out: &mut Vec<Finding>, key: &ObjectKey, list: &FieldPath, what: Weighted, weights: I, count: usize)
where
    I: Iterator<Item = Option<i64>> + Clone,
{
    if count == 0 {
        return;
    }
    if count == 1 {
        if let Some(w) = weights.clone().next().flatten().filter(|w| *w != 100) {
            out.push(Finding::new(
                Code::RG101,
                key,
                list.index(0).key("weight"),
                format!("weight of the only {} in {list} is {w}, expected 100 or no weight", what.item),
            ));
        }
        return;
    }
    // i128: the sum of any number of i64 weights cannot overflow in practice.
    let sum: i128 = weights.clone().map(|w| i128::from(w.unwrap_or(what.missing))).sum();
    if sum == 100 {
        return;
    }
    let mut parts = String::new();
    for (j, w) in weights.clone().enumerate() {
        if j > 0 {
            parts.push_str(" + ");
        }
        let _ = write!(parts, "{}", w.unwrap_or(what.missing));
    }
    // The API server fills in omitted Gateway API weights, so say it whatever the object shows.
    let note = if what.relative || weights.clone().any(|w| w.is_none()) {
        format!(" (a missing weight counts as {})", what.missing)
    } else {
        String::new()
    };
    out.push(Finding::new(
        Code::RG101,
        key,
        list.clone(),
        format!("weights of {list} sum to {sum} ({parts}), expected 100{note}"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    const ISTIO: Weighted = Weighted { item: "destination", missing: 0, relative: false };
    const GATEWAY: Weighted = Weighted { item: "backendRef", missing: 1, relative: true };

    fn run(mode: WeightMode, what: Weighted, weights: &[Option<i64>]) -> Vec<Finding> {
        let key = ObjectKey { kind: Kind::VirtualService, namespace: "default".into(), name: "r".into() };
        let list = FieldPath::new("spec").key("http").index(0).key("route");
        let mut out = Vec::new();
        check(&mut out, mode, &key, &list, what, weights.iter().copied());
        out
    }

    fn summaries(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(Finding::summary).collect()
    }

    #[test]
    fn sum_100_allows_100_and_a_lone_unweighted_entry() {
        assert!(run(WeightMode::Sum100, ISTIO, &[]).is_empty());
        assert!(run(WeightMode::Sum100, ISTIO, &[None]).is_empty());
        assert!(run(WeightMode::Sum100, ISTIO, &[Some(100)]).is_empty());
        assert!(run(WeightMode::Sum100, ISTIO, &[Some(80), Some(20)]).is_empty());
        assert!(run(WeightMode::Sum100, ISTIO, &[Some(100), None]).is_empty());
        assert!(run(WeightMode::Sum100, GATEWAY, &[Some(99), None]).is_empty());
    }

    #[test]
    fn a_lone_backend_ref_takes_all_traffic_with_any_weight_above_0() {
        for mode in [WeightMode::Sum100, WeightMode::Relative] {
            // What the API server sends for a backendRef written without a weight.
            assert!(run(mode, GATEWAY, &[Some(1)]).is_empty());
            assert!(run(mode, GATEWAY, &[Some(7)]).is_empty());
            assert!(run(mode, GATEWAY, &[None]).is_empty());
            assert_eq!(
                summaries(&run(mode, GATEWAY, &[Some(0)])),
                ["RG102 spec.http[0].route[0].weight: weight of the only backendRef in spec.http[0].route is 0, \
                     so it would receive no traffic; expected a weight above 0 (or no weight)"]
            );
            let found = run(mode, GATEWAY, &[Some(0), Some(0)]);
            assert_eq!(
                summaries(&found),
                ["RG102 spec.http[0].route: all weights of spec.http[0].route are 0, so no backendRef would \
                     receive traffic; expected at least one weight above 0"]
            );
        }
        // Istio's lone destination takes all traffic whatever its weight says.
        assert!(run(WeightMode::Relative, ISTIO, &[Some(0)]).is_empty());
    }

    #[test]
    fn sum_100_refuses_other_sums() {
        assert_eq!(
            summaries(&run(WeightMode::Sum100, ISTIO, &[Some(80), Some(10)])),
            ["RG101 spec.http[0].route: weights of spec.http[0].route sum to 90 (80 + 10), expected 100"]
        );
        assert_eq!(
            summaries(&run(WeightMode::Sum100, ISTIO, &[Some(80), None])),
            ["RG101 spec.http[0].route: weights of spec.http[0].route sum to 80 (80 + 0), expected 100 \
                 (a missing weight counts as 0)"]
        );
        assert_eq!(
            summaries(&run(WeightMode::Sum100, GATEWAY, &[None, None])),
            ["RG101 spec.http[0].route: weights of spec.http[0].route sum to 2 (1 + 1), expected 100 \
                 (a missing weight counts as 1)"]
        );
        // As the API server sends it: the omitted weights already filled in.
        assert_eq!(
            summaries(&run(WeightMode::Sum100, GATEWAY, &[Some(1), Some(1)])),
            ["RG101 spec.http[0].route: weights of spec.http[0].route sum to 2 (1 + 1), expected 100 \
                 (a missing weight counts as 1)"]
        );
        assert_eq!(
            summaries(&run(WeightMode::Sum100, ISTIO, &[Some(50)])),
            ["RG101 spec.http[0].route[0].weight: weight of the only destination in spec.http[0].route is 50, \
                 expected 100 or no weight"]
        );
    }

    #[test]
    fn negative_weights_are_refused_in_every_mode() {
        for mode in [WeightMode::Sum100, WeightMode::Relative] {
            let found = run(mode, ISTIO, &[Some(110), Some(-10)]);
            assert_eq!(found[0].code, Code::RG102);
            assert_eq!(found[0].path.as_str(), "spec.http[0].route[1].weight");
            assert_eq!(found[0].message, "weight of spec.http[0].route[1] is -10, expected 0 or more");
            assert_eq!(found.len(), 1);
        }
    }

    #[test]
    fn relative_mode_refuses_only_all_zero_splits() {
        assert!(run(WeightMode::Relative, ISTIO, &[Some(1), Some(7)]).is_empty());
        assert!(run(WeightMode::Relative, ISTIO, &[Some(0)]).is_empty());
        assert!(run(WeightMode::Relative, ISTIO, &[Some(0), Some(3)]).is_empty());
        assert!(run(WeightMode::Relative, GATEWAY, &[None, None]).is_empty());
        assert_eq!(
            summaries(&run(WeightMode::Relative, ISTIO, &[None, Some(0)])),
            ["RG102 spec.http[0].route: all weights of spec.http[0].route are 0, so no destination would \
                 receive traffic; expected at least one weight above 0"]
        );
        let found = run(WeightMode::Relative, GATEWAY, &[Some(0), Some(0)]);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("no backendRef would receive traffic"));
    }
}
