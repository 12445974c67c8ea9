//! A connection string as messages may show it: with its password masked.

/// What stands in for a password.
const MASK: &str = "***";

/// `url` with any password in it replaced by `***`: the one of its user part (`postgres://user:password@host/db`)
/// and a `password` parameter, in a URL's query (`?password=…`) or in a `key=value` connection string
/// (`host=db password=…`). Everything else is kept as given, so the message names the database the user meant.
pub fn without_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", url_without_password(rest)),
        None => key_values_without_password(url),
    }
}

/// The part of a URL after its scheme, masked. The user part ends at the first `@`, as the PostgreSQL client's
/// parser takes it (so a password holding a `/` is masked whole).
fn url_without_password(rest: &str) -> String {
    let (user_info, after) = match rest.split_once('@') {
        Some((user_info, after)) => (Some(user_info), after),
        None => (None, rest),
    };
    let mut masked = String::with_capacity(rest.len());
    if let Some(user_info) = user_info {
        match user_info.split_once(':') {
            Some((user, _password)) => {
                masked.push_str(user);
                masked.push(':');
                masked.push_str(MASK);
            }
            None => masked.push_str(user_info),
        }
        masked.push('@');
    }
    match after.split_once('?') {
        Some((address, query)) => {
            masked.push_str(address);
            masked.push('?');
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some(("password", _)) => format!("password={MASK}"),
                    _ => parameter.to_owned(),
                })
                .collect();
            masked.push_str(&parameters.join("&"));
        }
        None => masked.push_str(after),
    }
    masked
}

/// A `key=value` connection string with its `password` value masked. Values may be quoted with `'`, with `\`
/// escaping a quote or backslash inside.
fn key_values_without_password(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // Whitespace between pairs, kept.
        let spaces = rest.len() - rest.trim_start().len();
        masked.push_str(&rest[..spaces]);
        rest = &rest[spaces..];
        // The key, up to `=` (which may have spaces around it).
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        masked.push_str(key);
        rest = &rest[key_end..];
        let before_equals = rest.len() - rest.trim_start().len();
        if !rest[before_equals..].starts_with('=') {
            continue;
        }
        let after_equals =
            rest[before_equals + 1..].len() - rest[before_equals + 1..].trim_start().len();
        let value_start = before_equals + 1 + after_equals;
        masked.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        let value_len = value_length(rest);
        if key == "password" {
            masked.push_str(MASK);
        } else {
            masked.push_str(&rest[..value_len]);
        }
        rest = &rest[value_len..];
    }
    masked
}

/// How long the value at the start of `text` is: a quoted one to its closing quote, else up to whitespace.
fn value_length(text: &str) -> usize {
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut escaped = false;
        for (index, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return index + 2,
                _ => {}
            }
        }
        text.len()
    } else {
        text.find(char::is_whitespace).unwrap_or(text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_are_masked_wherever_a_connection_string_has_them() {
        let cases = [
            (
                "postgres://lab:s3cret@db.example:5433/proctor",
                "postgres://lab:***@db.example:5433/proctor",
            ),
            ("postgresql://lab@db/proctor", "postgresql://lab@db/proctor"),
            ("postgres://db/proctor", "postgres://db/proctor"),
            (
                "postgres://lab:pa/ss@db/proctor",
                "postgres://lab:***@db/proctor",
            ),
            (
                "postgres://lab@db/proctor?sslmode=disable&password=s3cret",
                "postgres://lab@db/proctor?sslmode=disable&password=***",
            ),
            (
                "host=db user=lab password=s3cret dbname=proctor",
                "host=db user=lab password=*** dbname=proctor",
            ),
            (
                "host=db password = 's3 \\' cret' dbname=proctor",
                "host=db password = *** dbname=proctor",
            ),
            ("host=db", "host=db"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(without_password(url), shown, "{url}");
        }
    }
}
