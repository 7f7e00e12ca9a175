//! On/off settings (`KDTHIN_CACHE=off`, `KDTHIN_VERBOSE=1`). A value that
//! is neither is reported, naming the variable, and the default is used:
//! never silently taken as one or the other (`KDTHIN_CACHE=of` used to
//! mean "on").

use std::ffi::OsStr;

/// `value` of the setting `name`: on or off, or why it is neither.
pub fn parse(name: &str, value: &OsStr) -> Result<bool, String> {
    let v = value.to_string_lossy().trim().to_ascii_lowercase();
    match v.as_str() {
        "0" | "off" | "no" | "false" | "disable" | "disabled" => Ok(false),
        "1" | "on" | "yes" | "true" | "enable" | "enabled" => Ok(true),
        // A verbosity level (`KDTHIN_VERBOSE=2`) is on.
        _ if v.parse::<u32>().is_ok_and(|n| n > 0) => Ok(true),
        _ => Err(format!("{name}={}: not on or off (1/0, on/off, yes/no, true/false)", value.to_string_lossy())),
    }
}

/// The setting from `get`: `default` when unset or empty, or when its
/// value is neither on nor off (then a warning is added).
pub fn get(
    name: &str,
    default: bool,
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
    warnings: &mut Vec<String>,
) -> bool {
    match get(name).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => parse(name, &v).unwrap_or_else(|why| {
            warnings.push(format!("{why}; using {}", if default { "on" } else { "off" }));
            default
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn on_off_and_neither() {
        for v in ["1", "on", "ON", "yes", "true", "enabled", "2", " on "] {
            assert_eq!(parse("X", OsStr::new(v)), Ok(true), "{v}");
        }
        for v in ["0", "off", "Off", "no", "false", "disable"] {
            assert_eq!(parse("X", OsStr::new(v)), Ok(false), "{v}");
        }
        for v in ["of", "-1", "1.5", "maybe"] {
            let e = parse("KDTHIN_CACHE", OsStr::new(v)).unwrap_err();
            assert!(e.starts_with(&format!("KDTHIN_CACHE={v}: not on or off")), "{e}");
        }
    }

    #[test]
    fn a_bad_value_warns_and_keeps_the_default() {
        let env = |v: &'static str| move |_: &str| Some(OsString::from(v));
        let mut w = vec![];
        assert!(get("KDTHIN_CACHE", true, env("of"), &mut w));
        assert!(!get("KDTHIN_VERBOSE", false, env("verbose"), &mut w));
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("KDTHIN_CACHE=of") && w[0].ends_with("using on"), "{w:?}");
        assert!(w[1].contains("KDTHIN_VERBOSE=verbose") && w[1].ends_with("using off"), "{w:?}");
        assert!(!get("KDTHIN_CACHE", true, env("off"), &mut w));
        assert!(get("KDTHIN_CACHE", true, |_: &str| None, &mut w));
        assert!(get("KDTHIN_CACHE", true, env(""), &mut w), "empty is unset");
        assert_eq!(w.len(), 2, "good values add no warning");
    }
}
