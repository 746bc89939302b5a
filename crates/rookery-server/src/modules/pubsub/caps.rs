//! XEP-0115 Entity Capabilities: the verification string of a disco#info result, and what each
//! local resource's capabilities say it wants notifications for (`<node>+notify`, XEP-0163 §4.3).

use crate::forms;
use base64::Engine;
use dashmap::DashMap;
use rookery_core::{BareJid, Element, FullJid};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub const NS: &str = "http://jabber.org/protocol/caps";
const INFO: &str = "http://jabber.org/protocol/disco#info";

/// Distinct verified `ver`s remembered.
const MAX_CACHED: usize = 10_000;

/// Nodes a resource wants notifications for.
pub type Interests = Arc<BTreeSet<String>>;

/// The `<c/>` of a presence: its hash function, node and verification string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub hash: Option<String>,
    pub node: String,
    pub ver: String,
}

impl Claim {
    pub fn from_presence(p: &Element) -> Option<Claim> {
        let c = p.get_child("c", NS)?;
        Some(Claim {
            hash: c.attr("hash").map(str::to_string),
            node: c.attr("node").unwrap_or_default().to_string(),
            ver: c.attr("ver")?.to_string(),
        })
    }

    /// The node to ask disco#info about (§6.2).
    pub fn query_node(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }
}

/// The verification string (§5.1); None when the result may not be cached (§5.4: duplicate
/// identities or features, or a malformed FORM_TYPE).
pub fn verification_string(query: &Element) -> Option<String> {
    let mut identities = Vec::new();
    let mut features = Vec::new();
    let mut forms_out: Vec<(String, String)> = Vec::new();
    for c in query.children() {
        if c.is("identity", INFO) {
            identities.push(format!(
                "{}/{}/{}/{}",
                c.attr("category").unwrap_or_default(),
                c.attr("type").unwrap_or_default(),
                c.attr("xml:lang").unwrap_or_default(),
                c.attr("name").unwrap_or_default()
            ));
        } else if c.is("feature", INFO) {
            features.push(c.attr("var").unwrap_or_default().to_string());
        } else if c.is("x", forms::NS) {
            let mut fields: Vec<(String, Vec<String>)> = Vec::new();
            let mut form_type = None;
            for f in c.children().filter(|f| f.is("field", forms::NS)) {
                let var = f.attr("var")?.to_string();
                let mut values: Vec<String> = f
                    .children()
                    .filter(|v| v.is("value", forms::NS))
                    .map(|v| v.text())
                    .collect();
                if var == "FORM_TYPE" {
                    if f.attr("type") != Some("hidden") && f.attr("type").is_some() {
                        return None;
                    }
                    if values.len() != 1 || form_type.is_some() {
                        return None;
                    }
                    form_type = values.pop();
                    continue;
                }
                values.sort();
                fields.push((var, values));
            }
            // Forms without FORM_TYPE are ignored (§5.4 3.6).
            let Some(ft) = form_type else { continue };
            fields.sort();
            let mut s = format!("{ft}<");
            for (var, values) in fields {
                s.push_str(&var);
                s.push('<');
                for v in values {
                    s.push_str(&v);
                    s.push('<');
                }
            }
            forms_out.push((ft, s));
        }
    }
    let dup = |v: &mut Vec<String>| {
        let n = v.len();
        v.sort();
        v.dedup();
        v.len() != n
    };
    if dup(&mut identities) || dup(&mut features) {
        return None;
    }
    forms_out.sort();
    if forms_out.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut s = String::new();
    for i in identities {
        s.push_str(&i);
        s.push('<');
    }
    for f in features {
        s.push_str(&f);
        s.push('<');
    }
    for (_, f) in forms_out {
        s.push_str(&f);
    }
    Some(s)
}

/// `ver` for a disco#info result with hash function `hash` (§5.1); None for other functions.
pub fn ver(query: &Element, hash: &str) -> Option<String> {
    let s = verification_string(query)?;
    let digest = match hash {
        "sha-1" => Sha1::digest(s.as_bytes()).to_vec(),
        "sha-256" => Sha256::digest(s.as_bytes()).to_vec(),
        _ => return None,
    };
    Some(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The `+notify` features of a disco#info result.
pub fn interests(query: &Element) -> Interests {
    Arc::new(
        query
            .children()
            .filter(|c| c.is("feature", INFO))
            .filter_map(|c| c.attr("var")?.strip_suffix("+notify").map(str::to_string))
            .collect(),
    )
}

/// Capabilities of local resources. Results are cached by verified `ver`, so each client
/// version is asked once; a result that does not verify still applies to the resource that gave
/// it (it speaks for itself), but is not cached.
#[derive(Default)]
pub struct Registry {
    /// Each available local resource's current claim.
    claims: DashMap<FullJid, Claim>,
    /// Verified `ver` → interests.
    cache: DashMap<String, Interests>,
    /// Interests a resource reported that did not verify against its `ver`.
    unverified: DashMap<FullJid, (String, Interests)>,
    /// Per resource: for each account whose PEP sent it last items, the interests that was for.
    delivered: DashMap<FullJid, HashMap<BareJid, Interests>>,
}

impl Registry {
    /// Records a resource's claim; true when it changed.
    pub fn claim(&self, who: &FullJid, claim: Option<Claim>) -> bool {
        match claim {
            Some(c) => {
                let changed = self.claims.get(who).is_none_or(|old| *old != c);
                self.claims.insert(who.clone(), c);
                changed
            }
            None => self.claims.remove(who).is_some(),
        }
    }

    pub fn claim_of(&self, who: &FullJid) -> Option<Claim> {
        self.claims.get(who).map(|c| c.clone())
    }

    /// What the resource wants, when known.
    pub fn interests_of(&self, who: &FullJid) -> Option<Interests> {
        let claim = self.claims.get(who)?;
        if let Some(i) = self.cache.get(&claim.ver) {
            return Some(i.clone());
        }
        self.unverified
            .get(who)
            .filter(|e| e.0 == claim.ver)
            .map(|e| e.1.clone())
    }

    pub fn is_known(&self, ver: &str) -> bool {
        self.cache.contains_key(ver)
    }

    /// A disco#info answer from `who` about `query_node` (`<caps node>#<ver>`). Returns the
    /// interests when they concern the resource's current claim.
    pub fn answer(&self, who: &FullJid, query: &Element) -> Option<Interests> {
        let (_, ver) = query.attr("node")?.rsplit_once('#')?;
        let claim = self.claim_of(who);
        let hash = claim
            .as_ref()
            .filter(|c| c.ver == ver)
            .and_then(|c| c.hash.clone())
            .unwrap_or_else(|| "sha-1".into());
        let got = interests(query);
        let verified = self::ver(query, &hash).as_deref() == Some(ver);
        // Clients can mint verified hashes at will: the cache has a size limit, and past it a
        // result only serves the resource that gave it.
        if verified && (self.cache.len() < MAX_CACHED || self.cache.contains_key(ver)) {
            self.cache.insert(ver.to_string(), got.clone());
        } else if claim.as_ref().is_some_and(|c| c.ver == ver) {
            self.unverified
                .insert(who.clone(), (ver.to_string(), got.clone()));
        }
        claim.filter(|c| c.ver == ver).map(|_| got)
    }

    /// Notes that `owner`'s PEP has sent `who` the last items for `now`; returns the nodes that
    /// are new since the last time (all of them the first time).
    pub fn newly_interested(&self, who: &FullJid, owner: &BareJid, now: &Interests) -> Vec<String> {
        let mut entry = self.delivered.entry(who.clone()).or_default();
        let before = entry.insert(owner.clone(), now.clone());
        now.iter()
            .filter(|n| before.as_ref().is_none_or(|b| !b.contains(*n)))
            .cloned()
            .collect()
    }

    /// Whether `owner`'s PEP has dealt with `who`'s interests since it became available.
    pub fn delivered_to(&self, who: &FullJid, owner: &BareJid) -> bool {
        self.delivered
            .get(who)
            .is_some_and(|d| d.contains_key(owner))
    }

    /// The resource went away.
    pub fn forget(&self, who: &FullJid) {
        self.claims.remove(who);
        self.unverified.remove(who);
        self.delivered.remove(who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(xml: &str) -> Element {
        Element::parse(xml).unwrap()
    }

    #[test]
    fn xep_0115_examples_verify() {
        // §5.2 simple example.
        let simple = q("<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity category='client' name='Exodus 0.9.1' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>");
        assert_eq!(
            ver(&simple, "sha-1").as_deref(),
            Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
        // §5.3 complex example, with an extended form and languages.
        let complex = q("<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
            <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/>\
            <x xmlns='jabber:x:data' type='result'>\
            <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
            <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
            <field var='os'><value>Mac</value></field>\
            <field var='os_version'><value>10.5.1</value></field>\
            <field var='software'><value>Psi</value></field>\
            <field var='software_version'><value>0.11</value></field></x></query>");
        assert_eq!(
            ver(&complex, "sha-1").as_deref(),
            Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
    }

    #[test]
    fn conformance_clients_verify() {
        // The caps the Prosody conformance scripts send (verse, clix, scansion).
        let verse = q("<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity type='pc' name='Verse' category='client'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/caps'/></query>");
        assert_eq!(
            ver(&verse, "sha-1").as_deref(),
            Some("PDH7CGVPRERS2WUqBD18PHGEzaY=")
        );
        let notify = q("<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity type='pc' name='Verse' category='client'/>\
            <feature var='http://jabber.org/protocol/tune+notify'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/mood+notify'/></query>");
        assert_eq!(
            ver(&notify, "sha-1").as_deref(),
            Some("IfQwbaaDB4LEP5tkGArEaB/3Y+s=")
        );
        let i = interests(&notify);
        assert!(i.contains("http://jabber.org/protocol/tune"));
        assert!(i.contains("http://jabber.org/protocol/mood"));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn duplicates_do_not_verify() {
        let dup = q("<query xmlns='http://jabber.org/protocol/disco#info'>\
            <feature var='a'/><feature var='a'/></query>");
        assert_eq!(verification_string(&dup), None);
    }

    #[test]
    fn registry_caches_verified_answers_and_tracks_deliveries() {
        let r = Registry::default();
        let who = FullJid::new("a@x/r").unwrap();
        let owner = BareJid::new("b@x").unwrap();
        let claim = Claim {
            hash: Some("sha-1".into()),
            node: "n".into(),
            ver: "QgayPKawpkPSDYmwT/WM94uAlu0=".into(),
        };
        assert!(r.claim(&who, Some(claim.clone())));
        assert!(!r.claim(&who, Some(claim.clone())));
        assert!(r.interests_of(&who).is_none());
        let answer = q("<query xmlns='http://jabber.org/protocol/disco#info' \
            node='n#QgayPKawpkPSDYmwT/WM94uAlu0='>\
            <identity category='client' name='Exodus 0.9.1' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>");
        assert!(r.answer(&who, &answer).is_some());
        assert!(r.is_known(&claim.ver));
        // A lying answer applies to its sender only.
        let liar = FullJid::new("c@x/r").unwrap();
        r.claim(
            &liar,
            Some(Claim {
                ver: "bogus".into(),
                ..claim.clone()
            }),
        );
        let lie = q(
            "<query xmlns='http://jabber.org/protocol/disco#info' node='n#bogus'>\
            <feature var='urn:x+notify'/></query>",
        );
        assert!(r.answer(&liar, &lie).unwrap().contains("urn:x"));
        assert!(!r.is_known("bogus"));
        assert!(r.interests_of(&liar).unwrap().contains("urn:x"));
        let now: Interests = Arc::new(["a".to_string(), "b".to_string()].into());
        assert_eq!(r.newly_interested(&who, &owner, &now), vec!["a", "b"]);
        assert!(r.newly_interested(&who, &owner, &now).is_empty());
        r.forget(&who);
        assert!(!r.delivered_to(&who, &owner));
        assert!(r.interests_of(&who).is_none());
    }
}
