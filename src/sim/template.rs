//! Script variables and `{name}` templates: pure text functions over the input and a seeded
//! generator, so the same seed and input always give the same values.

use std::collections::BTreeMap;

/// Replace `{name}` with `vars[name]`; anything else in braces (JSON, unknown names) stays.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}');
        let name = close.map(|c| &after[..c]);
        match name {
            Some(n)
                if !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    && vars.contains_key(n) =>
            {
                out.push_str(&vars[n]);
                rest = &after[n.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn tokens(input: &str) -> Vec<&str> {
    input
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| ".,;:!?\"'()".contains(c)))
        .filter(|t| !t.is_empty())
        .collect()
}

/// The first token of the input that is a number (`250`, `1,500.75`, `$99`).
pub fn first_number(input: &str) -> Option<String> {
    tokens(input).into_iter().find_map(|t| {
        let t = t.trim_start_matches(['$', '€', '£']).replace(',', "");
        let numeric = !t.is_empty()
            && t.chars().all(|c| c.is_ascii_digit() || c == '.')
            && t.chars().filter(|&c| c == '.').count() <= 1
            && t.chars().next().is_some_and(|c| c.is_ascii_digit());
        numeric.then_some(t)
    })
}

const FILLERS: &[&str] = &[
    "the", "a", "an", "my", "our", "their", "account", "order", "cluster", "number", "no", "id",
];

/// The token after `word` (skipping fillers such as "the", "account").
pub fn word_after(input: &str, word: &str) -> Option<String> {
    let toks = tokens(input);
    let at = toks.iter().position(|t| t.eq_ignore_ascii_case(word))?;
    toks[at + 1..]
        .iter()
        .find(|t| !FILLERS.contains(&t.to_ascii_lowercase().as_str()))
        .map(|t| (*t).to_owned())
}

fn range(spec: &str) -> Option<(f64, f64)> {
    let (lo, hi) = spec.split_once("..")?;
    let (lo, hi): (f64, f64) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

fn call<'a>(spec: &'a str, name: &str) -> Option<&'a str> {
    spec.strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// Evaluate one variable spec: `number(lo..hi)`, `amount(lo..hi)`, `random(lo..hi)`,
/// `pick(a|b)` (the option the input names, else a seeded choice), `after(word|default)`, `id(PREFIX)`, or literal text.
pub fn eval(spec: &str, input: &str, rng: &mut fastrand::Rng) -> String {
    let spec = spec.trim();
    let int_in = |r: (f64, f64), rng: &mut fastrand::Rng| {
        let (lo, hi) = (r.0 as i64, r.1 as i64);
        rng.i64(lo..=hi).to_string()
    };
    if let Some(r) = call(spec, "number").and_then(range) {
        return first_number(input).unwrap_or_else(|| int_in(r, rng));
    }
    if let Some(r) = call(spec, "amount").and_then(range) {
        return first_number(input).map_or_else(
            || {
                let cents = rng.i64((r.0 * 100.0) as i64..=(r.1 * 100.0) as i64);
                format!("{}.{:02}", cents / 100, cents % 100)
            },
            |n| n.parse::<f64>().map_or(n.clone(), |v| format!("{v:.2}")),
        );
    }
    if let Some(r) = call(spec, "random").and_then(range) {
        return int_in(r, rng);
    }
    if let Some(options) = call(spec, "pick") {
        let options: Vec<&str> = options.split('|').map(str::trim).collect();
        let toks = tokens(input);
        if let Some(named) = options
            .iter()
            .find(|o| toks.iter().any(|t| t.eq_ignore_ascii_case(o)))
        {
            return (*named).to_owned();
        }
        return options[rng.usize(..options.len())].to_owned();
    }
    if let Some(args) = call(spec, "after") {
        let (word, default) = args.split_once('|').unwrap_or((args, ""));
        return word_after(input, word.trim()).unwrap_or_else(|| eval(default, input, rng));
    }
    if let Some(prefix) = call(spec, "id") {
        return format!("{prefix}{:06}", rng.u32(..1_000_000));
    }
    spec.to_owned()
}

/// Evaluate a script's variables on top of `base`, then resolve references between them.
pub fn eval_all(
    specs: &BTreeMap<String, String>,
    input: &str,
    rng: &mut fastrand::Rng,
    base: &mut BTreeMap<String, String>,
) {
    for (name, spec) in specs {
        let value = eval(spec, input, rng);
        base.insert(name.clone(), value);
    }
    for _ in 0..3 {
        // A round that would change nothing leaves the next ones nothing to change either: no
        // copy of the map for the scripts whose values name no other (most of them).
        if !specs
            .keys()
            .any(|n| base.get(n).is_some_and(|v| v.contains('{')))
        {
            break;
        }
        let snapshot = base.clone();
        let mut changed = false;
        for name in specs.keys() {
            let rendered = render(&snapshot[name], &snapshot);
            if rendered != snapshot[name] {
                changed = true;
                base.insert(name.clone(), rendered);
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_names_and_leaves_json_alone() {
        let vars: BTreeMap<String, String> = [("a".to_owned(), "1".to_owned())].into();
        assert_eq!(render("x{a}y{b}", &vars), "x1y{b}");
        assert_eq!(render("{\"k\": {a}}", &vars), "{\"k\": 1}");
        assert_eq!(render("{", &vars), "{");
    }

    #[test]
    fn input_numbers_and_words_win_over_randomness() {
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(
            eval("amount(1..9)", "pay $1,250 to bob", &mut rng),
            "1250.00"
        );
        assert_eq!(
            eval("after(to|x)", "pay 5 to the account DE-44.", &mut rng),
            "DE-44"
        );
        assert_eq!(eval("after(to|x)", "pay 5", &mut rng), "x");
        assert_eq!(first_number("close acct-77 now"), None);
        let a = eval(
            "amount(25..5000)",
            "pay someone",
            &mut fastrand::Rng::with_seed(9),
        );
        let b = eval(
            "amount(25..5000)",
            "pay someone",
            &mut fastrand::Rng::with_seed(9),
        );
        assert_eq!(a, b);
        assert!(a.contains('.'));
    }

    #[test]
    fn variables_can_refer_to_each_other() {
        let specs: BTreeMap<String, String> = [
            ("account".to_owned(), "after(account|acct-{n})".to_owned()),
            ("n".to_owned(), "random(10..10)".to_owned()),
        ]
        .into();
        let mut vars = BTreeMap::new();
        eval_all(
            &specs,
            "close it",
            &mut fastrand::Rng::with_seed(1),
            &mut vars,
        );
        assert_eq!(vars["account"], "acct-10");
    }
}
