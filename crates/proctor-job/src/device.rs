//! The machine under test beside an agent: `agent.toml`'s `[device]` table, with the keys of a Testflinger device
//! connector's configuration (`device_ip`, `serial_host`, `serial_port`, `reboot_script`, `env`, …).
//!
//! Phases see it as environment variables ([`Device::environment`]), and `test_cmds` written for Testflinger's
//! templating get its `{device_ip}`-style placeholders filled in ([`Device::fill_placeholders`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::values::ScalarText;

/// The key whose table holds environment variables given to the phases as they are written.
const ENV: &str = "env";

/// A device description: any keys (letters, digits and `_`, as Testflinger's are), each a string, number,
/// boolean, list or table; `env` is a table of variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    keys: BTreeMap<String, Value>,
}

impl Device {
    /// The value of `key`, if the description has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key)
    }

    /// Sets `key` unless the description has it already.
    pub fn set_default(&mut self, key: &str, value: impl Into<Value>) {
        self.keys
            .entry(key.to_owned())
            .or_insert_with(|| value.into());
    }

    /// The environment every phase gets: each key upper-cased (`device_ip` is `DEVICE_IP`) with its value as text, a
    /// list joined with `;` (Testflinger passes `reboot_script` as `REBOOT_SCRIPT` so), tables left out; then the
    /// `env` table's variables as written, which win over an upper-cased key of the same name.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut environment: BTreeMap<String, String> = self
            .keys
            .iter()
            .filter(|(key, _)| key.as_str() != ENV)
            .filter_map(|(key, value)| {
                let text = match value {
                    Value::Array(items) => items
                        .iter()
                        .map(scalar_text)
                        .collect::<Option<Vec<_>>>()?
                        .join(";"),
                    value => scalar_text(value)?,
                };
                Some((key.to_ascii_uppercase(), text))
            })
            .collect();
        if let Some(Value::Object(variables)) = self.keys.get(ENV) {
            for (name, value) in variables {
                if let Some(text) = scalar_text(value) {
                    environment.insert(name.clone(), text);
                }
            }
        }
        environment
    }

    /// Fills `{key}` placeholders in one of a job's commands, the way Testflinger's device connectors do since they
    /// deprecated their templating: only in commands that contain `{{` (older jobs, written when every command was
    /// a template, escape their literal braces so), so modern shell such as `${device_ip}` is left alone. Then
    /// `{key}` and `{key[index]}` (`{env[DEVICE_IP]}`, `{reboot_script[0]}`) become the value of a key the
    /// description has, `{{` and `}}` become `{` and `}`, and anything else in braces (an unknown key, `{}`, a
    /// format spec) is kept as written. Where Python's formatter would fail the phase (a lone `}`), the text is
    /// kept too.
    pub fn fill_placeholders<'a>(&self, command: &'a str) -> Cow<'a, str> {
        if !command.contains("{{") {
            return Cow::Borrowed(command);
        }
        let mut filled = String::with_capacity(command.len());
        let mut rest = command;
        while let Some(at) = rest.find(['{', '}']) {
            filled.push_str(&rest[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                filled.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if let Some(after) = tail.strip_prefix('}') {
                filled.push('}');
                rest = after;
                continue;
            }
            // A field runs to the next `}`; one with a `{` inside is not a field.
            let inside = &tail[1..];
            let field = inside
                .find(['{', '}'])
                .filter(|&end| inside[end..].starts_with('}'))
                .map(|end| &inside[..end]);
            match field {
                Some(field) => {
                    match self.field_text(field) {
                        Some(text) => filled.push_str(&text),
                        None => {
                            filled.push('{');
                            filled.push_str(field);
                            filled.push('}');
                        }
                    }
                    rest = &tail[field.len() + 2..];
                }
                None => {
                    filled.push('{');
                    rest = &tail[1..];
                }
            }
        }
        filled.push_str(rest);
        Cow::Owned(filled)
    }

    /// The text of a placeholder's field (`device_ip`, `env[DEVICE_IP]`, `device_ip!s`), if it names a scalar the
    /// description has.
    fn field_text(&self, field: &str) -> Option<String> {
        let field = field.strip_suffix("!s").unwrap_or(field);
        let head_end = field.find('[').unwrap_or(field.len());
        let mut value = self.keys.get(&field[..head_end])?;
        let mut indexes = &field[head_end..];
        while !indexes.is_empty() {
            let index = indexes.strip_prefix('[')?;
            let end = index.find(']')?;
            let (index, after) = (&index[..end], &index[end + 1..]);
            value = match value {
                Value::Object(table) => table.get(index)?,
                Value::Array(items) => items.get(index.parse::<usize>().ok()?)?,
                _ => return None,
            };
            indexes = after;
        }
        scalar_text(value)
    }
}

/// A scalar as text (a string as it is, a number or boolean as TOML writes it); `None` for lists, tables and null.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Whether `name` can be an environment variable's name once upper-cased: letters, digits and `_`, not starting
/// with a digit.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Device, D::Error> {
        deserializer.deserialize_map(DeviceVisitor)
    }
}

struct DeviceVisitor;

impl<'de> Visitor<'de> for DeviceVisitor {
    type Value = Device;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a table of device keys")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Device, A::Error> {
        let mut keys = BTreeMap::new();
        while let Some(key) = entries.next_key::<String>()? {
            if !is_variable_name(&key) {
                return Err(de::Error::invalid_value(
                    Unexpected::Str(&key),
                    &"a device key of letters, digits and `_` (it is given to the phases as an environment variable)",
                ));
            }
            let value = if key == ENV {
                let variables: BTreeMap<VariableName, ScalarText> = entries.next_value()?;
                Value::Object(
                    variables
                        .into_iter()
                        .map(|(name, value)| (name.0, Value::String(value.0)))
                        .collect(),
                )
            } else {
                entries.next_value::<Value>()?
            };
            keys.insert(key, value);
        }
        Ok(Device { keys })
    }
}

/// The name of a variable in `env`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct VariableName(String);

impl<'de> Deserialize<'de> for VariableName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<VariableName, D::Error> {
        let name = String::deserialize(deserializer)?;
        if is_variable_name(&name) {
            Ok(VariableName(name))
        } else {
            Err(de::Error::invalid_value(
                Unexpected::Str(&name),
                &"an environment variable name of letters, digits and `_`",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(toml_text: &str) -> Device {
        toml::from_str(toml_text).expect("a device table")
    }

    fn rpi() -> Device {
        device(
            "device_ip = \"10.0.0.42\"\nserial_port = 3001\nreboot_script = [\"off\", \"on\"]\n\
             [env]\nDEVICE_IP = \"10.0.0.43\"\nWPA_SSID = \"lab-ap\"\n",
        )
    }

    #[test]
    fn keys_are_exported_upper_cased_and_env_as_written_wins() {
        let environment = rpi().environment();
        let pairs: Vec<_> = environment
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("DEVICE_IP", "10.0.0.43"),
                ("REBOOT_SCRIPT", "off;on"),
                ("SERIAL_PORT", "3001"),
                ("WPA_SSID", "lab-ap"),
            ]
        );
    }

    /// The cases of Testflinger's own tests (device-connectors/tests/test_snappy_device_agents.py), and the gate
    /// on `{{` its run_test_cmds keeps.
    #[test]
    fn placeholders_are_filled_as_testflingers_device_connectors_fill_them() {
        let device = rpi();
        let fill = |text: &str| device.fill_placeholders(text).into_owned();
        assert_eq!(
            fill("ssh ubuntu@{device_ip} {{x}}"),
            "ssh ubuntu@10.0.0.42 {x}"
        );
        assert_eq!(fill("test  {unknown_item} {{"), "test  {unknown_item} {");
        assert_eq!(fill("{{device_ip}}"), "{device_ip}");
        assert_eq!(
            fill("{env[WPA_SSID]} {reboot_script[1]} {serial_port!s} {{}}"),
            "lab-ap on 3001 {}"
        );
        assert_eq!(
            fill("{} {device_ip:>12} {reboot_script} {env[NONE]} ${WPA_SSID} {{"),
            "{} {device_ip:>12} {reboot_script} {env[NONE]} ${WPA_SSID} {"
        );
        assert_eq!(
            fill("f() { echo; }; {{{device_ip}}} }"),
            "f() { echo; }; {10.0.0.42} }"
        );
        // Without `{{` the command is modern shell, left alone.
        assert_eq!(
            fill("ssh ubuntu@{device_ip} ${device_ip}"),
            "ssh ubuntu@{device_ip} ${device_ip}"
        );
    }

    #[test]
    fn keys_and_variables_that_cannot_be_environment_names_are_refused() {
        for text in ["device-ip = \"x\"\n", "[env]\n\"A B\" = \"x\"\n"] {
            let error = toml::from_str::<Device>(text).expect_err(text);
            assert!(
                error.to_string().contains("letters, digits and `_`"),
                "{error}"
            );
        }
        let error = toml::from_str::<Device>("[env]\nA = [1]\n").expect_err("a list");
        assert!(
            error.to_string().contains("string, number or boolean"),
            "{error}"
        );
    }
}
