//! A method as plain configuration (no tensors), shared by the engine, the
//! CLI, the config file and the TUI: a registry entry plus one value per
//! parameter. Its serde form is the one the old enum had
//! (`{method = "odin", temperature = 1000, epsilon = 0}`), so config files
//! and summary.json keep their shape.

mod def;
pub mod registry;

pub use def::{Kind, MethodDef, Needs, NumberRange, ParamDef, ParamKind};
use std::path::PathBuf;

/// One parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Path(PathBuf),
    /// One of a [`ParamKind::Choice`]'s names.
    Choice(&'static str),
    /// A [`ParamKind::Text`] name.
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{v}"),
            Value::Path(p) => write!(f, "{}", p.display()),
            Value::Choice(c) => f.write_str(c),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// One OOD score. Higher always means "more in-distribution".
#[derive(Debug, Clone)]
pub struct Method {
    def: &'static MethodDef,
    values: Vec<Value>,
    /// The column name when it is not the key: the spec of the parameters
    /// given explicitly (`react:percentile=85`).
    name: Option<String>,
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        self.def.key == other.def.key && self.values == other.values && self.name == other.name
    }
}

/// A bad method spec or parameter value, naming both.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl Method {
    /// The method `key` with its registry defaults.
    pub fn from_key(key: &str) -> Option<Method> {
        let def = registry::find(key)?;
        Some(Method {
            def,
            values: def.params.iter().map(|p| p.kind.default_value()).collect(),
            name: None,
        })
    }

    /// The method `key` with some parameters set (the column name stays the
    /// key): for code that builds methods, e.g. tests.
    pub fn with_params(key: &str, params: &[(&str, f64)]) -> Result<Method, SpecError> {
        let mut m = Method::from_key(key).ok_or_else(|| unknown(key))?;
        for (name, v) in params {
            m.set_number(name, *v)?;
        }
        Ok(m)
    }

    pub fn def(&self) -> &'static MethodDef {
        self.def
    }

    pub fn key(&self) -> &'static str {
        self.def.key
    }

    /// The name the paper's table uses.
    pub fn label(&self) -> &'static str {
        self.def.label
    }

    /// Column and summary key: the key with default parameters, else the
    /// spec of the explicit ones.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.def.key)
    }

    /// The table's row label: the label, plus the explicit parameters.
    pub fn row_label(&self) -> String {
        match &self.name {
            Some(n) => match n.split_once(':') {
                Some((_, rest)) => format!("{} {}", self.def.label, rest.replace(':', " ")),
                None => self.def.label.to_string(),
            },
            None => self.def.label.to_string(),
        }
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The number parameter `name` (None when the method has none).
    pub fn number(&self, name: &str) -> Option<f64> {
        let i = self.def.params.iter().position(|p| p.name == name)?;
        match self.values[i] {
            Value::Number(v) => Some(v),
            _ => None,
        }
    }

    /// The text parameter `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        let i = self.def.params.iter().position(|p| p.name == name)?;
        match &self.values[i] {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The choice parameter `name`.
    pub fn choice(&self, name: &str) -> Option<&'static str> {
        let i = self.def.params.iter().position(|p| p.name == name)?;
        match self.values[i] {
            Value::Choice(c) => Some(c),
            _ => None,
        }
    }

    /// The path parameter `name`.
    pub fn path(&self, name: &str) -> Option<&std::path::Path> {
        let i = self.def.params.iter().position(|p| p.name == name)?;
        match &self.values[i] {
            Value::Path(p) => Some(p),
            _ => None,
        }
    }

    /// Sets parameter `name` from text, checked against its range.
    pub fn set(&mut self, name: &str, text: &str) -> Result<(), SpecError> {
        let i = param_index(self.def, name)?;
        self.values[i] = self.def.params[i].parse(self.def.key, text)?;
        Ok(())
    }

    /// Sets parameter `name` to a number, checked against its range.
    pub fn set_number(&mut self, name: &str, v: f64) -> Result<(), SpecError> {
        self.set(name, &v.to_string())
    }

    /// Whether the score needs a fit file (`gradnorm-tui fit`).
    pub fn needs_fit(&self) -> bool {
        self.def.needs.fit
    }

    /// Every path parameter set: the one check of a file a method cannot
    /// run without (Mahalanobis's parameters), for the CLI, the form and the
    /// engine alike. Parameters given in memory skip it.
    pub fn require_paths(&self) -> Result<(), SpecError> {
        for (p, v) in self.def.params.iter().zip(&self.values) {
            if matches!(v, Value::Path(path) if path.as_os_str().is_empty()) {
                let key = self.def.key;
                return Err(SpecError(format!(
                    "{key} needs --{key}-{name} FILE or {key}:{name}=FILE ({help})",
                    name = p.name,
                    help = p.help
                )));
            }
        }
        Ok(())
    }

    /// Parses `key[:name=value]*` where a value may list alternatives
    /// (`react:percentile=85|90|95`): one method per combination, in order.
    /// `defaults` are (key, parameter, value) overrides of the registry's
    /// defaults (the legacy flags); they do not change the column name.
    pub fn parse_spec(
        spec: &str,
        defaults: &[(&str, &str, String)],
    ) -> Result<Vec<Method>, SpecError> {
        let mut parts = spec.trim().split(':');
        let key = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut base = Method::from_key(&key).ok_or_else(|| unknown(&key))?;
        for (k, p, v) in defaults {
            if *k == base.key() {
                base.set(p, v)?;
            }
        }
        let mut given: Vec<(usize, Vec<&str>)> = Vec::new();
        for part in parts {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                SpecError(format!(
                    "{key}: `{part}` is not NAME=VALUE (it has {})",
                    param_list(base.def)
                ))
            })?;
            let name = name.trim();
            let i = param_index(base.def, name)?;
            if given.iter().any(|(j, _)| *j == i) {
                return Err(SpecError(format!("{key}: parameter `{name}` given twice")));
            }
            let alternatives: Vec<&str> = value.split('|').map(str::trim).collect();
            for a in &alternatives {
                base.def.params[i].parse(&key, a)?;
            }
            given.push((i, alternatives));
        }
        given.sort_by_key(|(i, _)| *i);
        // Every combination, the last parameter varying fastest.
        let mut out = vec![base];
        for (i, alternatives) in &given {
            let mut next = Vec::with_capacity(out.len() * alternatives.len());
            for m in &out {
                for a in alternatives {
                    let mut m = m.clone();
                    m.values[*i] = m.def.params[*i].parse(&key, a)?;
                    next.push(m);
                }
            }
            out = next;
        }
        if !given.is_empty() {
            for m in &mut out {
                let mut name = m.def.key.to_string();
                for (i, _) in &given {
                    name.push_str(&format!(":{}={}", m.def.params[*i].name, m.values[*i]));
                }
                m.name = Some(name);
            }
        }
        Ok(out)
    }
}

/// The GradNorm whose two factors (sum_k |C p_k - 1| and ||h||_1) the
/// anatomy shows with every image: the run's first in the paper's form
/// (every parameter but the temperature at the registry's default: the
/// head's weight, L1, uniform target), in table order; the factors multiply
/// to no other form's score. Every reader (the scorer, the store, the TUI)
/// asks here.
pub fn anatomy_gradnorm(methods: &[Method]) -> Option<usize> {
    methods.iter().position(|m| {
        m.def.kind == Kind::GradNorm
            && m.def
                .params
                .iter()
                .zip(&m.values)
                .all(|(p, v)| p.name == "temperature" || *v == p.kind.default_value())
    })
}

/// The temperature of [`anatomy_gradnorm`], else GradNorm's default.
pub fn anatomy_temperature(methods: &[Method]) -> f64 {
    let gradnorm = match anatomy_gradnorm(methods) {
        Some(i) => methods[i].clone(),
        None => Method::from_key("gradnorm").expect("the registry has gradnorm"),
    };
    gradnorm
        .number("temperature")
        .expect("gradnorm has a temperature")
}

/// The index of parameter `name` of `def`, or an error listing its own.
fn param_index(def: &MethodDef, name: &str) -> Result<usize, SpecError> {
    def.params
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| {
            SpecError(format!(
                "{}: no parameter `{name}` (it has {})",
                def.key,
                param_list(def)
            ))
        })
}

/// The error for a key the registry lacks.
fn unknown(key: &str) -> SpecError {
    SpecError(format!(
        "unknown method `{key}` (choose from {})",
        registry::keys().join(", ")
    ))
}

fn param_list(def: &MethodDef) -> String {
    if def.params.is_empty() {
        "no parameters".into()
    } else {
        def.params
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (self.def.describe)(self, f)
    }
}

impl serde::Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = usize::from(self.name.is_some());
        let mut map = s.serialize_map(Some(1 + self.values.len() + extra))?;
        map.serialize_entry("method", self.def.key)?;
        for (p, v) in self.def.params.iter().zip(&self.values) {
            match v {
                Value::Number(x) => map.serialize_entry(p.name, x)?,
                Value::Path(x) => map.serialize_entry(p.name, x)?,
                Value::Choice(x) => map.serialize_entry(p.name, x)?,
                Value::Text(x) => map.serialize_entry(p.name, x)?,
            }
        }
        if let Some(n) = &self.name {
            map.serialize_entry("name", n)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let key = map
            .get("method")
            .and_then(|v| v.as_str())
            .ok_or_else(|| D::Error::custom("a method needs `method = \"KEY\"`"))?;
        let mut m = Method::from_key(key).ok_or_else(|| D::Error::custom(unknown(key)))?;
        for (name, v) in &map {
            match name.as_str() {
                "method" => {}
                "name" => m.name = v.as_str().map(str::to_string),
                _ => {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        other => {
                            return Err(D::Error::custom(format!(
                                "{key}: `{name}` = {other} is not a number or path"
                            )))
                        }
                    };
                    m.set(name, &text).map_err(D::Error::custom)?;
                }
            }
        }
        Ok(m)
    }
}

impl ParamKind {
    pub(crate) fn default_value(&self) -> Value {
        match self {
            ParamKind::Number(range) => Value::Number(range.default),
            ParamKind::Path => Value::Path(PathBuf::new()),
            ParamKind::Choice(names) => Value::Choice(names[0]),
            ParamKind::Text(default) => Value::Text(default.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_with_a_sweep_gives_one_method_per_value() {
        for (spec, want) in [
            (
                "react:percentile=85|90|95",
                [
                    "react:percentile=85",
                    "react:percentile=90",
                    "react:percentile=95",
                ],
            ),
            (
                "gradnorm:norm=l1|l2|linf:target=predicted",
                [
                    "gradnorm:norm=l1:target=predicted",
                    "gradnorm:norm=l2:target=predicted",
                    "gradnorm:norm=linf:target=predicted",
                ],
            ),
        ] {
            let ms = Method::parse_spec(spec, &[]).unwrap();
            let names: Vec<&str> = ms.iter().map(|m| m.name()).collect();
            assert_eq!(names, want);
        }
        let ms = Method::parse_spec("react:percentile=85|90|95", &[]).unwrap();
        assert_eq!(ms[1].number("percentile"), Some(90.0));
    }

    #[test]
    fn gradnorm_choices_are_named_checked_and_kept_as_strings() {
        let ms = Method::parse_spec("gradnorm:norm=l1|l2|linf:target=predicted", &[]).unwrap();
        assert_eq!(ms[2].choice("norm"), Some("linf"));
        assert_eq!(ms[0].to_string(), "GradNorm (T=1, predicted target)");
        assert_eq!(ms[1].to_string(), "GradNorm (T=1, l2, predicted target)");
        let e = Method::parse_spec("gradnorm:norm=l3", &[]).unwrap_err().0;
        assert!(
            e.contains("gradnorm: norm must be one of l1, l2, linf, got `l3`"),
            "{e}"
        );
        let e = Method::parse_spec("gradnorm:target=soft", &[])
            .unwrap_err()
            .0;
        assert!(
            e.contains("target must be one of uniform, predicted"),
            "{e}"
        );
        // The config file and summary.json carry choices as strings.
        let t: Method = toml::from_str("method = \"gradnorm\"\nnorm = \"l2\"\n").unwrap();
        assert_eq!(t.choice("norm"), Some("l2"));
        let j = serde_json::to_value(&ms[1]).unwrap();
        assert_eq!(j["norm"], "l2");
        assert_eq!(serde_json::from_value::<Method>(j).unwrap(), ms[1]);
    }

    #[test]
    fn legacy_defaults_keep_the_key_as_name_and_a_spec_overrides_them() {
        let d = [("odin", "epsilon", "0.002".to_string())];
        let plain = Method::parse_spec("odin", &d).unwrap();
        assert_eq!(plain[0].name(), "odin");
        assert_eq!(plain[0].number("epsilon"), Some(0.002));
        let spec = Method::parse_spec("odin:temperature=10:epsilon=0.001", &d).unwrap();
        assert_eq!(spec[0].name(), "odin:temperature=10:epsilon=0.001");
        assert_eq!(spec[0].number("epsilon"), Some(0.001));
    }

    #[test]
    fn bad_values_name_the_method_the_parameter_and_the_range() {
        for (spec, needle) in [
            ("odin:temperature=nan", "odin: temperature"),
            ("odin:temperature=inf", "odin: temperature"),
            ("odin:temperature=0", "> 0"),
            ("odin:epsilon=-1", "odin: epsilon"),
            ("gradnorm:tau=2", "no parameter `tau`"),
            ("nope", "unknown method `nope`"),
            ("energy:temperature", "not NAME=VALUE"),
        ] {
            let e = Method::parse_spec(spec, &[]).unwrap_err().0;
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn the_default_methods_run_on_any_model_without_files() {
        for key in registry::DEFAULT_METHODS {
            let m = Method::from_key(key).unwrap();
            assert!(!m.needs_fit(), "{key}");
            assert!(m.require_paths().is_ok(), "{key}");
        }
    }

    #[test]
    fn a_method_without_its_file_says_which_and_how() {
        let m = Method::from_key("mahalanobis").unwrap();
        let e = m.require_paths().unwrap_err().0;
        assert!(e.contains("needs --mahalanobis-params FILE"), "{e}");
        assert!(e.contains("mahalanobis:params=FILE"), "{e}");
        let given = Method::parse_spec("mahalanobis:params=p.safetensors", &[]).unwrap();
        assert!(given[0].require_paths().is_ok());
    }

    #[test]
    fn serde_keeps_the_old_shape() {
        let m = Method::parse_spec("odin", &[]).unwrap().remove(0);
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"method": "odin", "temperature": 1000.0, "epsilon": 0.0})
        );
        let back: Method = serde_json::from_value(j).unwrap();
        assert_eq!(back, m);
        let t: Method = toml::from_str("method = \"gradnorm\"\ntemperature = 2\n").unwrap();
        assert_eq!(t.number("temperature"), Some(2.0));
    }
}
