//! fmf's context expression language, the `when` of an adjust rule, mirroring `fmf/context.py`.
//!
//! A rule is `or`-separated groups of `and`-separated expressions. An expression is `true`,
//! `false`, `DIMENSION is defined`, `DIMENSION is not defined`, or `DIMENSION OPERATOR VALUES`
//! with comma-separated alternative values. Comparisons are version-aware: `fedora-33` is the
//! name `fedora` and the version parts `33`, and `fedora < fedora-33`-style comparisons between
//! different names or missing versions cannot be decided. Every expression is true, false or
//! undecided (the dimension is missing, or no value could be compared); `and` and `or` combine
//! those three as fmf does, and a rule that is not decidedly true or false is undecided.

use crate::context::Context;
use crate::python;
use regex::Regex;
use std::cmp::Ordering;
use std::sync::LazyLock;

/// What a condition says about a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The condition holds.
    Yes,
    /// The condition does not hold.
    No,
    /// The context lacks what the condition asks about (fmf's `CannotDecide`).
    Undecided,
}

/// A `when` condition that cannot be parsed or evaluated. Offsets are byte offsets into the
/// condition after fmf's rewriting of a lone `=` to `==`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An `or` has nothing on one side.
    #[error("empty `or` operand at offset {offset}")]
    EmptyOr {
        /// Where the empty operand is.
        offset: usize,
    },
    /// An `and` has nothing on one side.
    #[error("empty `and` operand at offset {offset}")]
    EmptyAnd {
        /// Where the empty operand is.
        offset: usize,
    },
    /// An operand is none of `true`, `false`, `DIM is [not] defined`, `DIM OP VALUES`.
    #[error("cannot parse expression {expression:?} at offset {offset}")]
    Unparsable {
        /// The operand.
        expression: String,
        /// Where it starts.
        offset: usize,
    },
    /// The value of a `~` or `!~` is not a regular expression the `regex` crate accepts.
    #[error("invalid regular expression {pattern:?}: {message}")]
    BadRegex {
        /// The value.
        pattern: String,
        /// The regex parser's description.
        message: String,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
    GreaterOrEqual,
    Greater,
    MinorLess,
    MinorLessOrEqual,
    MinorEqual,
    MinorNotEqual,
    MinorGreaterOrEqual,
    MinorGreater,
    Match,
    NotMatch,
}

/// The operators in the order fmf's regular expression tries them (the order matters: the
/// first alternative that lets the whole expression match wins).
const OPERATORS: [(&str, Operator); 14] = [
    ("<", Operator::Less),
    ("~<", Operator::MinorLess),
    ("<=", Operator::LessOrEqual),
    ("~<=", Operator::MinorLessOrEqual),
    ("==", Operator::Equal),
    ("~=", Operator::MinorEqual),
    ("!=", Operator::NotEqual),
    ("~!=", Operator::MinorNotEqual),
    (">=", Operator::GreaterOrEqual),
    ("~>=", Operator::MinorGreaterOrEqual),
    (">", Operator::Greater),
    ("~>", Operator::MinorGreater),
    ("~", Operator::Match),
    ("!~", Operator::NotMatch),
];

/// One operand of `and`.
#[derive(Debug, Clone, PartialEq)]
enum Expression {
    Constant(bool),
    Defined {
        dimension: String,
        negated: bool,
    },
    Compare {
        dimension: String,
        operator: Operator,
        values: Vec<String>,
    },
}

/// A parsed `when` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `or` groups of `and` operands.
    groups: Vec<Vec<Expression>>,
}

static TRIPLE: LazyLock<Regex> = LazyLock::new(|| {
    let operators: Vec<String> = OPERATORS
        .iter()
        .map(|(text, _)| regex::escape(text))
        .collect();
    let pattern = format!(r"\A([\w-]+)\s*({})\s*([^=].*)", operators.join("|"));
    Regex::new(&pattern).unwrap_or_else(|error| unreachable!("fixed pattern: {error}"))
});
static DOUBLE: LazyLock<Regex> =
    LazyLock::new(|| fixed_regex(r"\A([\w-]+)\s*(is defined|is not defined)"));
static OR: LazyLock<Regex> = LazyLock::new(|| fixed_regex(r"\bor\b"));
static AND: LazyLock<Regex> = LazyLock::new(|| fixed_regex(r"\band\b"));

fn fixed_regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|error| unreachable!("fixed pattern {pattern}: {error}"))
}

impl Rule {
    /// Parses a condition as fmf does: a lone `=` means `==`, the text is split on the words
    /// `or` and `and` (wherever they stand as words, even inside a value), and each operand must
    /// be one of the expression forms. Text after a line break in an operand is ignored, as in
    /// fmf.
    pub fn parse(condition: &str) -> Result<Rule, RuleError> {
        let condition = double_lone_equals(condition);
        let mut groups = Vec::new();
        for (or_offset, or_group) in split_with_offsets(&OR, &condition) {
            if or_group.is_empty() {
                return Err(RuleError::EmptyOr { offset: or_offset });
            }
            let mut group = Vec::new();
            for (and_offset, part) in split_with_offsets(&AND, or_group) {
                let offset = or_offset + and_offset;
                let stripped = python::strip(part);
                if stripped.is_empty() {
                    return Err(RuleError::EmptyAnd { offset });
                }
                let leading = part.len() - part.trim_start_matches(python::is_space).len();
                group.push(parse_expression(stripped, offset + leading)?);
            }
            groups.push(group);
        }
        Ok(Rule { groups })
    }

    /// Decides the rule for `context` with fmf's three-valued `and` and `or`. Like fmf it stops
    /// at the first false operand of an `and` and the first true group of an `or`, so a bad
    /// regular expression after them is not reported.
    pub fn evaluate(&self, context: &Context) -> Result<Decision, RuleError> {
        let mut outcome: Option<Decision> = None;
        for group in &self.groups {
            let group_outcome = evaluate_and_group(group, context)?;
            if group_outcome == Decision::Yes {
                return Ok(Decision::Yes);
            }
            outcome = Some(match outcome {
                None => group_outcome,
                Some(Decision::No) if group_outcome == Decision::No => Decision::No,
                Some(_) => Decision::Undecided,
            });
        }
        Ok(match outcome {
            Some(Decision::No) => Decision::No,
            _ => Decision::Undecided,
        })
    }
}

fn evaluate_and_group(group: &[Expression], context: &Context) -> Result<Decision, RuleError> {
    let mut outcome: Option<Decision> = None;
    for expression in group {
        let result = evaluate_expression(expression, context)?;
        let combined = match outcome {
            None => result,
            Some(Decision::No) => Decision::No,
            Some(_) if result == Decision::No => Decision::No,
            Some(Decision::Yes) if result == Decision::Yes => Decision::Yes,
            Some(_) => Decision::Undecided,
        };
        if combined == Decision::No {
            return Ok(Decision::No);
        }
        outcome = Some(combined);
    }
    Ok(outcome.unwrap_or(Decision::Undecided))
}

/// fmf rewrites every `=` that has none of `=!~<>` before it and no `=` after it to `==`.
fn double_lone_equals(condition: &str) -> String {
    let mut out = String::with_capacity(condition.len() + 4);
    let mut previous: Option<char> = None;
    let mut chars = condition.chars().peekable();
    while let Some(c) = chars.next() {
        let lone = c == '='
            && !matches!(previous, Some('=' | '!' | '~' | '<' | '>'))
            && chars.peek() != Some(&'=');
        if lone {
            out.push_str("==");
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

/// Python's `regex.split(text)`, with each piece's byte offset in `text`.
fn split_with_offsets<'t>(separator: &Regex, text: &'t str) -> Vec<(usize, &'t str)> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for found in separator.find_iter(text) {
        pieces.push((start, &text[start..found.start()]));
        start = found.end();
    }
    pieces.push((start, &text[start..]));
    pieces
}

fn parse_expression(part: &str, offset: usize) -> Result<Expression, RuleError> {
    // fmf matches these as prefixes: `trueish` is true.
    if part.starts_with("true") {
        return Ok(Expression::Constant(true));
    }
    if part.starts_with("false") {
        return Ok(Expression::Constant(false));
    }
    if let Some(captures) = TRIPLE.captures(part) {
        let operator_text = &captures[2];
        let operator = OPERATORS
            .iter()
            .find(|(text, _)| *text == operator_text)
            .map(|(_, operator)| *operator)
            .unwrap_or_else(|| unreachable!("the pattern only matches listed operators"));
        let values = captures[3]
            .split(',')
            .map(|value| python::strip(value).to_owned())
            .collect();
        return Ok(Expression::Compare {
            dimension: captures[1].to_owned(),
            operator,
            values,
        });
    }
    if let Some(captures) = DOUBLE.captures(part) {
        return Ok(Expression::Defined {
            dimension: captures[1].to_owned(),
            negated: &captures[2] == "is not defined",
        });
    }
    Err(RuleError::Unparsable {
        expression: part.to_owned(),
        offset,
    })
}

fn evaluate_expression(expression: &Expression, context: &Context) -> Result<Decision, RuleError> {
    match expression {
        Expression::Constant(value) => Ok(decision(*value)),
        Expression::Defined { dimension, negated } => {
            Ok(decision(context.values(dimension).is_some() != *negated))
        }
        Expression::Compare {
            dimension,
            operator,
            values,
        } => match context.values(dimension) {
            None => Ok(Decision::Undecided),
            Some(dimension_values) => compare_any(
                dimension_values,
                *operator,
                values,
                context.is_case_sensitive(),
            ),
        },
    }
}

fn decision(value: bool) -> Decision {
    if value {
        Decision::Yes
    } else {
        Decision::No
    }
}

/// fmf's `_op_core`: true if any (context value, rule value) pair compares true, false if some
/// pair could be compared, undecided when none could.
fn compare_any(
    dimension_values: &[String],
    operator: Operator,
    rule_values: &[String],
    case_sensitive: bool,
) -> Result<Decision, RuleError> {
    let mut decided = false;
    for dimension_value in dimension_values {
        for rule_value in rule_values {
            match compare(dimension_value, operator, rule_value, case_sensitive)? {
                Some(true) => return Ok(Decision::Yes),
                Some(false) => decided = true,
                None => {}
            }
        }
    }
    Ok(if decided {
        Decision::No
    } else {
        Decision::Undecided
    })
}

/// One comparison: `None` when fmf's `version_cmp` cannot decide.
fn compare(
    left: &str,
    operator: Operator,
    right: &str,
    case_sensitive: bool,
) -> Result<Option<bool>, RuleError> {
    use Operator::*;
    if matches!(operator, Match | NotMatch) {
        let pattern = Regex::new(right).map_err(|error| RuleError::BadRegex {
            pattern: right.to_owned(),
            message: error.to_string(),
        })?;
        return Ok(Some(pattern.is_match(left) == (operator == Match)));
    }
    let left = VersionValue::new(left, case_sensitive);
    let right = VersionValue::new(right, case_sensitive);
    let minor = matches!(
        operator,
        MinorLess
            | MinorLessOrEqual
            | MinorEqual
            | MinorNotEqual
            | MinorGreaterOrEqual
            | MinorGreater
    );
    let ordered = !matches!(operator, Equal | NotEqual | MinorEqual | MinorNotEqual);
    let Some(ordering) = left.compare(&right, minor, ordered) else {
        return Ok(None);
    };
    Ok(Some(match operator {
        Equal | MinorEqual => ordering == Ordering::Equal,
        NotEqual | MinorNotEqual => ordering != Ordering::Equal,
        Less | MinorLess => ordering == Ordering::Less,
        LessOrEqual | MinorLessOrEqual => ordering != Ordering::Greater,
        Greater | MinorGreater => ordering == Ordering::Greater,
        GreaterOrEqual | MinorGreaterOrEqual => ordering != Ordering::Less,
        Match | NotMatch => unreachable!("handled above"),
    }))
}

/// fmf's `ContextValue`: a value split on `:`, `-` and `.` into a name and version parts.
struct VersionValue<'v> {
    parts: Vec<&'v str>,
    case_sensitive: bool,
}

impl<'v> VersionValue<'v> {
    fn new(text: &'v str, case_sensitive: bool) -> Self {
        VersionValue {
            parts: text.split([':', '-', '.']).collect(),
            case_sensitive,
        }
    }

    fn same_text(&self, first: &str, second: &str) -> bool {
        if self.case_sensitive {
            first == second
        } else {
            first.to_lowercase() == second.to_lowercase()
        }
    }

    /// fmf's `version_cmp`. The right side sets the precision: `centos` compares only names,
    /// `centos-7` the major version too. Unordered comparisons answer only equal or not
    /// (`Greater` standing for "not equal"). `None` is `CannotDecide`.
    fn compare(&self, other: &VersionValue<'_>, minor: bool, ordered: bool) -> Option<Ordering> {
        let (mine, theirs) = (&self.parts, &other.parts);
        if !self.same_text(mine[0], theirs[0]) {
            return if ordered {
                None
            } else {
                Some(Ordering::Greater)
            };
        }
        if minor && theirs.len() > 1 {
            let my_major = mine.get(1)?;
            if !self.same_text(my_major, theirs[1]) {
                if !ordered {
                    return Some(Ordering::Greater);
                }
                if theirs.len() > 2 {
                    return None;
                }
            }
        }
        for (first, second) in mine[1..].iter().zip(&theirs[1..]) {
            let ordering = self.compare_part(first, second);
            if ordering != Ordering::Equal {
                return Some(ordering);
            }
        }
        if theirs.len() <= mine.len() {
            Some(Ordering::Equal)
        } else if minor {
            None
        } else if !ordered {
            Some(Ordering::Greater)
        } else if mine.len() == 1 {
            None
        } else {
            Some(Ordering::Less)
        }
    }

    /// Parts compare as integers when both are, else as strings.
    fn compare_part(&self, first: &str, second: &str) -> Ordering {
        if let (Some(a), Some(b)) = (python::parse_int(first), python::parse_int(second)) {
            return a.cmp(&b);
        }
        if self.case_sensitive {
            first.cmp(second)
        } else {
            first.to_lowercase().cmp(&second.to_lowercase())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(pairs: &[&str]) -> Context {
        let pairs: Vec<String> = pairs.iter().map(|pair| pair.to_string()).collect();
        let mut context = Context::parse_pairs(&pairs).unwrap();
        context.set_case_sensitive(true);
        context
    }

    fn decide(rule: &str, pairs: &[&str]) -> Decision {
        Rule::parse(rule)
            .unwrap()
            .evaluate(&context(pairs))
            .unwrap()
    }

    use Decision::{No, Undecided, Yes};

    #[test]
    fn equality_uses_the_right_side_precision() {
        let fedora = ["distro=fedora-33"];
        assert_eq!(decide("distro == fedora", &fedora), Yes);
        assert_eq!(decide("distro == fedora-33", &fedora), Yes);
        assert_eq!(decide("distro == fedora-33.1", &fedora), No);
        assert_eq!(decide("distro == fedora-32", &fedora), No);
        assert_eq!(decide("distro == centos", &fedora), No);
        assert_eq!(decide("distro != centos", &fedora), Yes);
        assert_eq!(decide("distro = fedora", &fedora), Yes);
        assert_eq!(decide("distro == fedora-033", &fedora), Yes);
    }

    #[test]
    fn ordering_is_version_aware() {
        let centos = ["distro=centos-8.4"];
        assert_eq!(decide("distro < centos-8.10", &centos), Yes);
        assert_eq!(decide("distro >= centos-8", &centos), Yes);
        assert_eq!(decide("distro > centos-8", &centos), No);
        assert_eq!(decide("distro <= centos-7", &centos), No);
        assert_eq!(decide("distro < centos-9", &centos), Yes);
        // Different names cannot be ordered.
        assert_eq!(decide("distro < fedora-40", &centos), Undecided);
        // A value without a version cannot be ordered against one with a version.
        assert_eq!(decide("distro < fedora-40", &["distro=fedora"]), Undecided);
        assert_eq!(decide("distro >= rhel-9", &["distro=rhel-9"]), Yes);
        assert_eq!(decide("distro < rhel-10", &["distro=rhel-9.2"]), Yes);
    }

    #[test]
    fn minor_comparisons_need_the_same_major() {
        let centos = ["distro=centos-7.9"];
        assert_eq!(decide("distro ~< centos-8", &centos), Yes);
        assert_eq!(decide("distro ~< centos-8.2", &centos), Undecided);
        assert_eq!(decide("distro ~< centos-7.10", &centos), Yes);
        assert_eq!(decide("distro ~= centos-8", &centos), No);
        assert_eq!(decide("distro ~!= centos-8", &centos), Yes);
        assert_eq!(decide("distro ~= centos-7", &centos), Yes);
        assert_eq!(decide("distro ~>= centos-7.9", &centos), Yes);
        assert_eq!(decide("distro ~> centos-7.8", &centos), Yes);
        assert_eq!(decide("distro ~<= centos-7.8", &centos), No);
        assert_eq!(decide("distro ~< centos-7.9.1", &centos), Undecided);
        assert_eq!(decide("distro ~< centos-7", &["distro=centos"]), Undecided);
    }

    #[test]
    fn regex_operators_search() {
        let arch = ["arch=x86_64"];
        assert_eq!(decide("arch ~ ^x86", &arch), Yes);
        assert_eq!(decide("arch ~ 86_", &arch), Yes);
        assert_eq!(decide("arch !~ ^x86", &arch), No);
        assert_eq!(decide("arch ~ ^ppc, ^s390", &arch), No);
        let error = Rule::parse("arch ~ (")
            .unwrap()
            .evaluate(&context(&arch))
            .unwrap_err();
        assert!(matches!(error, RuleError::BadRegex { .. }));
    }

    #[test]
    fn definedness_is_always_decided() {
        assert_eq!(decide("arch is defined", &["arch=x86_64"]), Yes);
        assert_eq!(decide("arch is defined", &[]), No);
        assert_eq!(decide("arch is not defined", &[]), Yes);
    }

    #[test]
    fn alternatives_and_multiple_context_values() {
        assert_eq!(
            decide("distro == centos, fedora", &["distro=fedora-39"]),
            Yes
        );
        assert_eq!(decide("arch == ppc64", &["arch=x86_64,ppc64"]), Yes);
        assert_eq!(decide("arch != x86_64", &["arch=x86_64,ppc64"]), Yes);
    }

    #[test]
    fn three_valued_logic() {
        let arch = ["arch=x86_64"];
        assert_eq!(decide("distro == fedora", &arch), Undecided);
        assert_eq!(
            decide("distro == fedora and arch == x86_64", &arch),
            Undecided
        );
        assert_eq!(decide("distro == fedora and arch == ppc64", &arch), No);
        assert_eq!(decide("distro == fedora or arch == x86_64", &arch), Yes);
        assert_eq!(
            decide("distro == fedora or arch == ppc64", &arch),
            Undecided
        );
        assert_eq!(decide("arch == ppc64 or arch == s390x", &arch), No);
        assert_eq!(decide("true", &[]), Yes);
        assert_eq!(decide("false", &[]), No);
        assert_eq!(decide("false or true", &[]), Yes);
        assert_eq!(decide("true and false", &[]), No);
    }

    #[test]
    fn case_sensitivity_is_a_context_setting() {
        let mut context = context(&["distro=Fedora-39"]);
        let rule = Rule::parse("distro == fedora").unwrap();
        assert_eq!(rule.evaluate(&context).unwrap(), No);
        context.set_case_sensitive(false);
        assert_eq!(rule.evaluate(&context).unwrap(), Yes);
    }

    #[test]
    fn parse_errors_say_where() {
        assert_eq!(
            Rule::parse("a == 1 or "),
            Err(RuleError::EmptyAnd { offset: 9 })
        );
        assert_eq!(
            Rule::parse("or a == 1"),
            Err(RuleError::EmptyOr { offset: 0 })
        );
        assert_eq!(
            Rule::parse("a == 1 and and b == 2"),
            Err(RuleError::EmptyAnd { offset: 10 })
        );
        assert_eq!(
            Rule::parse("a == 1 and b ?? 2"),
            Err(RuleError::Unparsable {
                expression: "b ?? 2".to_owned(),
                offset: 11
            })
        );
        assert!(Rule::parse("").is_err());
        assert!(Rule::parse("distro ==").is_err());
    }

    #[test]
    fn or_and_split_anywhere_words_stand() {
        // fmf splits `fedora-or-rhel` on the word `or`: the halves do not parse.
        assert!(Rule::parse("distro == fedora-or-rhel").is_err());
        assert!(Rule::parse("distro == fedora-orrhel").is_ok());
    }

    #[test]
    fn lone_equals_becomes_double() {
        assert_eq!(double_lone_equals("a=b"), "a==b");
        assert_eq!(
            double_lone_equals("a==b a<=b a!=b a~=b a>=b"),
            "a==b a<=b a!=b a~=b a>=b"
        );
    }
}
