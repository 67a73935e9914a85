//! Address rewriting between the orgs: old-org addresses in a copy written to the new org become
//! new-org addresses, and the inverse turns them back for copies written to the old org.

use std::collections::{BTreeMap, HashMap};

use crate::domain::identity::strip_mailto;

/// Maps calendar addresses of the source org to the target org.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// Lower-cased source domain → target domain.
    domains: HashMap<String, String>,
    /// Lower-cased source address → target address; wins over `domains`.
    addresses: HashMap<String, String>,
}

impl Rewriter {
    pub fn new(
        domains: impl IntoIterator<Item = (String, String)>,
        addresses: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        Rewriter {
            domains: domains
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
            addresses: addresses
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.addresses.is_empty()
    }

    /// The target address for a source address, or `None` when it stays as it is.
    pub fn map_address(&self, addr: &str) -> Option<String> {
        let lower = addr.to_lowercase();
        if let Some(exact) = self.addresses.get(&lower) {
            return Some(exact.clone());
        }
        let (local, domain) = addr.rsplit_once('@')?;
        let target = self.domains.get(&domain.to_lowercase())?;
        Some(format!("{local}@{target}"))
    }

    /// Same as [`Rewriter::map_address`] for a `mailto:` URI; other URIs stay as they are.
    pub(crate) fn map_uri(&self, uri: &str) -> Option<String> {
        let addr = strip_mailto(uri)?;
        let scheme = &uri[..uri.len() - addr.len()];
        self.map_address(addr).map(|a| format!("{scheme}{a}"))
    }
}

/// Why a rewrite cannot be turned around: two addresses or domains of one org become the same
/// one in the other, so a copy written back could go to either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguous {
    #[error(
        "domains {} all become {target}, so writing back to the old org cannot tell which to use; \
         name one with [rewrite] reverse_domains",
        sources.join(", ")
    )]
    Domain {
        target: String,
        sources: Vec<String>,
    },
    #[error(
        "addresses {} all become {target}, so writing back to the old org cannot tell which to \
         use; give a reverse address map",
        sources.join(", ")
    )]
    Address {
        target: String,
        sources: Vec<String>,
    },
}

impl Rewriter {
    /// The rewrite the other way (new org → old org), for copies written back. `domains` and
    /// `addresses` say where the way back is not one-to-one (two old domains merged into one,
    /// say); they win over the inverted entries. Ambiguous when an inverted entry has two
    /// sources and no stated way back.
    pub fn inverse(
        &self,
        domains: impl IntoIterator<Item = (String, String)>,
        addresses: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Rewriter, Ambiguous> {
        let domains: HashMap<String, String> = domains
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let addresses: HashMap<String, String> = addresses
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let back =
            |map: &HashMap<String, String>, stated: &HashMap<String, String>, domain: bool| {
                let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (from, to) in map {
                    sources
                        .entry(to.to_lowercase())
                        .or_default()
                        .push(from.clone());
                }
                let mut out = stated.clone();
                for (target, mut from) in sources {
                    if out.contains_key(&target) {
                        continue;
                    }
                    if from.len() > 1 {
                        from.sort();
                        return Err(match domain {
                            true => Ambiguous::Domain {
                                target,
                                sources: from,
                            },
                            false => Ambiguous::Address {
                                target,
                                sources: from,
                            },
                        });
                    }
                    out.insert(target, from.remove(0));
                }
                Ok(out)
            };
        Ok(Rewriter {
            domains: back(&self.domains, &domains, true)?,
            addresses: back(&self.addresses, &addresses, false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn the_way_back_undoes_the_way_there() {
        let there = Rewriter::new(
            pairs(&[
                ("old.example", "new.example"),
                ("Sub.Old.Example", "sub.new.example"),
            ]),
            pairs(&[("bob@old.example", "robert@new.example")]),
        );
        let back = there.inverse([], []).unwrap();
        for addr in ["jane@old.example", "x@sub.old.example", "bob@old.example"] {
            let new = there.map_address(addr).unwrap();
            assert_eq!(
                back.map_address(&new).unwrap().to_lowercase(),
                addr,
                "{new}"
            );
        }
        assert_eq!(
            back.map_address("jane@NEW.example").unwrap(),
            "jane@old.example"
        );
        assert_eq!(back.map_address("jane@elsewhere.example"), None);
        assert_eq!(
            back.map_uri("mailto:robert@new.example").unwrap(),
            "mailto:bob@old.example"
        );
    }

    #[test]
    fn merged_domains_or_addresses_need_a_stated_way_back() {
        let merged = Rewriter::new(
            pairs(&[
                ("a.old.example", "new.example"),
                ("b.old.example", "new.example"),
            ]),
            [],
        );
        let err = merged.inverse([], []).unwrap_err();
        assert_eq!(
            err,
            Ambiguous::Domain {
                target: "new.example".into(),
                sources: vec!["a.old.example".into(), "b.old.example".into()],
            }
        );
        assert!(err.to_string().contains("reverse_domains"), "{err}");
        let stated = merged
            .inverse(pairs(&[("new.example", "a.old.example")]), [])
            .unwrap();
        assert_eq!(
            stated.map_address("x@new.example").unwrap(),
            "x@a.old.example"
        );
        let shared = Rewriter::new(
            [],
            pairs(&[
                ("room1@old.example", "rooms@new.example"),
                ("room2@old.example", "rooms@new.example"),
            ]),
        );
        assert!(matches!(
            shared.inverse([], []),
            Err(Ambiguous::Address { target, .. }) if target == "rooms@new.example"
        ));
    }
}
