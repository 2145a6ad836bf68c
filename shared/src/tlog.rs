//! The ledger's verifiable log (CONTRACT §12): every ledger event a leaf of an RFC 6962 Merkle tree
//! over its RFC 8785 canonical JSON, kept incrementally as Go's `tlog` stored hashes (the
//! `tlog_tiles` crate), with C2SP signed-note checkpoints (the `signed_note` crate). The tree code
//! here is the glue: reading stored hashes from PostgreSQL, and checking the stored tree against the
//! events it was built from.

use std::collections::HashMap;

use base64::prelude::*;
use qingling_events::Envelope;
use sqlx::PgConnection;
pub use tlog_tiles::Hash;
use tlog_tiles::{node_hash, record_hash, stored_hash_index, HashReader};

/// The bytes a leaf commits to: the RFC 8785 canonical JSON of the event's envelope.
pub fn canonical(env: &Envelope) -> Vec<u8> {
    let v = serde_json::to_value(env).expect("an envelope serialises");
    serde_json_canonicalizer::to_vec(&v).expect("JSON canonicalises")
}

/// The RFC 8785 canonical JSON of any event as exported (a verifier's side).
pub fn canonical_value(v: &serde_json::Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).expect("JSON canonicalises")
}

/// `H(0x00 ‖ bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    record_hash(bytes)
}

pub fn b64(h: &Hash) -> String {
    BASE64_STANDARD.encode(h.0)
}

pub fn from_b64(s: &str) -> Option<Hash> {
    let v = BASE64_STANDARD.decode(s).ok()?;
    Some(Hash(v.try_into().ok()?))
}

/// The right edge of a growing tree: for each level, the newest stored hash. Enough to compute
/// every stored hash of the next leaf without reading anything.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// Leaves so far.
    pub size: u64,
    levels: Vec<Hash>,
}

impl Frontier {
    /// The stored hashes (index, hash) leaf `self.size` adds, and the frontier after it.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u64, Hash)> {
        let n = self.size;
        let mut out = vec![(stored_hash_index(0, n), leaf)];
        let mut h = leaf;
        let mut level = 0u8;
        while (n >> level) & 1 == 1 {
            h = node_hash(self.levels[usize::from(level)], h);
            level += 1;
            out.push((stored_hash_index(level, n >> level), h));
        }
        for (l, (_, hash)) in out.iter().enumerate() {
            if self.levels.len() <= l {
                self.levels.push(*hash);
            } else {
                self.levels[l] = *hash;
            }
        }
        self.size += 1;
        out
    }

    /// The frontier of a tree of `size` leaves, from its stored hashes.
    pub async fn load(c: &mut PgConnection, size: u64) -> sqlx::Result<Frontier> {
        if size == 0 {
            return Ok(Frontier::default());
        }
        // The newest stored hash of each level l: index (size >> l) - 1 there, while it exists.
        let mut wanted = vec![];
        let mut l = 0u8;
        while (size >> l) > 0 {
            wanted.push(stored_hash_index(l, (size >> l) - 1));
            l += 1;
        }
        let got = read(c, &wanted).await?;
        Ok(Frontier {
            size,
            levels: wanted.iter().map(|i| got[i]).collect(),
        })
    }
}

/// Stored hashes by index.
pub async fn read(c: &mut PgConnection, indexes: &[u64]) -> sqlx::Result<HashMap<u64, Hash>> {
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select idx, hash from log_hashes where idx = any($1)")
            .bind(indexes.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .fetch_all(c)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(i, h)| Some((i as u64, Hash(h.try_into().ok()?))))
        .collect())
}

/// A `HashReader` over hashes read beforehand; the first pass only records what is asked.
struct Prefetched {
    hashes: Option<HashMap<u64, Hash>>,
    asked: std::cell::RefCell<Vec<u64>>,
}

impl HashReader for Prefetched {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match &self.hashes {
            None => {
                self.asked.borrow_mut().extend_from_slice(indexes);
                Ok(vec![Hash([0; 32]); indexes.len()])
            }
            Some(map) => indexes
                .iter()
                .map(|i| {
                    map.get(i)
                        .copied()
                        .ok_or(tlog_tiles::Error::IndexesNotInTree)
                })
                .collect(),
        }
    }
}

/// Runs a `tlog_tiles` computation against the stored hashes: once to learn which it reads (they
/// depend on sizes only), then with those read from the database.
pub async fn with_stored<T>(
    c: &mut PgConnection,
    f: impl Fn(&dyn Reader) -> Result<T, tlog_tiles::Error>,
) -> anyhow::Result<T> {
    let probe = Prefetched {
        hashes: None,
        asked: Default::default(),
    };
    f(&probe).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let asked = probe.asked.into_inner();
    let hashes = read(c, &asked).await?;
    let real = Prefetched {
        hashes: Some(hashes),
        asked: Default::default(),
    };
    f(&real).map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// `HashReader` as an object (the crate's functions are generic over it).
pub trait Reader {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error>;
}

impl<T: HashReader> Reader for T {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.read_hashes(indexes)
    }
}

/// The other way round, for the crate's generic functions.
pub struct Dyn<'a>(pub &'a dyn Reader);

impl HashReader for Dyn<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.read(indexes)
    }
}

/// The root of the first `size` leaves.
pub async fn root(c: &mut PgConnection, size: u64) -> anyhow::Result<Hash> {
    with_stored(c, |r| tlog_tiles::tree_hash(size, &Dyn(r))).await
}

/// The text of a C2SP checkpoint (before signatures).
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", b64(root))
}

/// The keys checkpoints are signed with: the ledger's, and perhaps a co-signer's (for example
/// the district's audit office), so no single key holder can fork the log unseen.
pub struct LogKeys {
    pub origin: String,
    signers: Vec<signed_note::StandardSigner>,
    /// The verifier keys (`<name>+<hash>+<base64>`), the ledger's first.
    pub verifier_keys: Vec<String>,
}

impl LogKeys {
    /// From signer keys (`PRIVATE+KEY+<name>+<hash>+<base64>`).
    pub fn new(origin: &str, signer_keys: &[String]) -> anyhow::Result<LogKeys> {
        let mut signers = vec![];
        let mut verifier_keys = vec![];
        for k in signer_keys {
            let k = k.trim();
            let signer = signed_note::StandardSigner::new(k)
                .map_err(|e| anyhow::anyhow!("not a signed-note signer key: {e:?}"))?;
            verifier_keys.push(verifier_key(k)?);
            signers.push(signer);
        }
        anyhow::ensure!(!signers.is_empty(), "no signing key");
        Ok(LogKeys {
            origin: origin.to_string(),
            signers,
            verifier_keys,
        })
    }

    /// A signed checkpoint note.
    pub fn sign(&self, size: u64, root: &Hash) -> anyhow::Result<String> {
        let text = checkpoint_text(&self.origin, size, root);
        let mut note =
            signed_note::Note::new(text.as_bytes(), &[]).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let signers: Vec<&dyn signed_note::Signer> = self
            .signers
            .iter()
            .map(|s| s as &dyn signed_note::Signer)
            .collect();
        note.add_sigs(&signers)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(String::from_utf8(note.to_bytes())?)
    }
}

/// The verifier key of a signer key.
pub fn verifier_key(signer_key: &str) -> anyhow::Result<String> {
    use ed25519_dalek_compat::derive;
    derive(signer_key)
}

/// A new key pair for `name`: (signer key, verifier key).
pub fn generate_key(name: &str) -> (String, String) {
    signed_note::generate_key(&mut rand_core::OsRng, name)
}

/// Checks a checkpoint note against verifier keys; its (origin, size, root).
pub fn verify_checkpoint(
    note: &str,
    verifier_keys: &[&str],
) -> anyhow::Result<(String, u64, Hash)> {
    let mut list: Vec<Box<dyn signed_note::Verifier>> = vec![];
    for k in verifier_keys {
        list.push(Box::new(
            signed_note::StandardVerifier::new(k)
                .map_err(|e| anyhow::anyhow!("verifier key: {e:?}"))?,
        ));
    }
    let n = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a signed note: {e:?}"))?;
    let (verified, _) = n
        .verify(&signed_note::VerifierList::new(list))
        .map_err(|e| anyhow::anyhow!("the checkpoint's signature does not verify: {e:?}"))?;
    anyhow::ensure!(
        verified.len() == verifier_keys.len(),
        "not every key signed the checkpoint"
    );
    let text = std::str::from_utf8(n.text())?;
    let mut lines = text.lines();
    let origin = lines.next().unwrap_or_default().to_string();
    let size: u64 = lines.next().unwrap_or_default().parse()?;
    let root = from_b64(lines.next().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!("the checkpoint's root hash is not base64 of 32 bytes"))?;
    Ok((origin, size, root))
}

mod ed25519_dalek_compat {
    //! A signer key's public half, as signed_note's own key generation writes it.
    use base64::prelude::*;

    pub fn derive(signer_key: &str) -> anyhow::Result<String> {
        // PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 ‖ 32-byte seed>
        let parts: Vec<&str> = signer_key.splitn(5, '+').collect();
        anyhow::ensure!(
            parts.len() == 5 && parts[0] == "PRIVATE" && parts[1] == "KEY",
            "not a signer key"
        );
        let raw = BASE64_STANDARD.decode(parts[4])?;
        anyhow::ensure!(raw.len() == 33 && raw[0] == 1, "not an Ed25519 signer key");
        let seed: [u8; 32] = raw[1..].try_into()?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(signed_note::new_ed25519_verifier_key(
            parts[2],
            &signing.verifying_key(),
        ))
    }
}

/// Where the stored tree disagrees with the events it was built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Tamper {
    /// The first leaf index that does not match.
    pub index: u64,
    pub what: String,
}

/// Rebuilds the tree from the events, page by page, and compares every stored hash, and the root of
/// every stored checkpoint, with it. `Ok(size)` when all agree.
pub async fn verify_stored(c: &mut PgConnection) -> anyhow::Result<Result<u64, Tamper>> {
    let size: i64 = sqlx::query_scalar("select size from log_state")
        .fetch_optional(&mut *c)
        .await?
        .unwrap_or(0);
    let size = size as u64;
    let mut frontier = Frontier::default();
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    let checkpoints: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select size, root from log_checkpoints order by size")
            .fetch_all(&mut *c)
            .await?;
    let wanted_roots: std::collections::HashSet<u64> =
        checkpoints.iter().map(|(s, _)| *s as u64).collect();
    const PAGE: i64 = 5_000;
    while frontier.size < size {
        let from = frontier.size as i64 + 1;
        let rows = crate::store::read_after(&mut *c, from - 1, PAGE).await?;
        if rows.is_empty() {
            return Ok(Err(Tamper {
                index: frontier.size,
                what: format!("event {} is missing (the log had {size})", frontier.size),
            }));
        }
        let mut computed = Vec::with_capacity(rows.len() * 2);
        for ev in &rows {
            if frontier.size >= size {
                break;
            }
            if ev.position as u64 != frontier.size + 1 {
                return Ok(Err(Tamper {
                    index: frontier.size,
                    what: format!(
                        "event {} is missing: position {} follows {}",
                        frontier.size, ev.position, frontier.size
                    ),
                }));
            }
            let leaf_index = frontier.size;
            for (idx, h) in frontier.push(leaf_hash(&canonical(ev))) {
                computed.push((idx, h, leaf_index));
            }
            if wanted_roots.contains(&frontier.size) {
                roots.insert(frontier.size, tree_root(&frontier));
            }
        }
        let stored = read(c, &computed.iter().map(|x| x.0).collect::<Vec<_>>()).await?;
        for (idx, h, leaf) in computed {
            if stored.get(&idx) != Some(&h) {
                return Ok(Err(Tamper {
                    index: leaf,
                    what: format!("event {leaf} does not match the hash the log recorded for it"),
                }));
            }
        }
    }
    for (s, root) in checkpoints {
        let s = s as u64;
        if s > size {
            return Ok(Err(Tamper {
                index: size,
                what: format!("a checkpoint of {s} events was signed, the log has {size}"),
            }));
        }
        if roots.get(&s).map(|h| h.0.as_slice()) != Some(root.as_slice()) && s > 0 {
            return Ok(Err(Tamper {
                index: s - 1,
                what: format!("the tree of {s} events differs from the checkpoint signed for it"),
            }));
        }
    }
    Ok(Ok(size))
}

/// The root of the tree a frontier describes (its complete subtrees, right to left).
pub fn tree_root(f: &Frontier) -> Hash {
    if f.size == 0 {
        return tlog_tiles::EMPTY_HASH;
    }
    let mut root: Option<Hash> = None;
    for (level, h) in f.levels.iter().enumerate() {
        if (f.size >> level) & 1 == 1 {
            root = Some(match root {
                None => *h,
                Some(r) => node_hash(*h, r),
            });
        }
    }
    root.expect("a non-empty tree has a root")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree hash computed as RFC 6962 §2.1 defines it, recursively.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - (n - 1).leading_zeros() - 1);
                node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_frontier_gives_the_stored_hashes_and_roots_of_rfc_6962() {
        let mut f = Frontier::default();
        let mut stored: HashMap<u64, Hash> = HashMap::new();
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for (i, leaf) in leaves.iter().enumerate() {
            let mut reader_hashes = stored.clone();
            let from_crate = tlog_tiles::stored_hashes_for_record_hash(
                i as u64,
                *leaf,
                &MapReader(&mut reader_hashes),
            )
            .unwrap();
            let ours = f.push(*leaf);
            assert_eq!(
                ours.iter().map(|x| x.1).collect::<Vec<_>>(),
                from_crate,
                "leaf {i}"
            );
            stored.extend(ours);
            assert_eq!(tree_root(&f), mth(&leaves[..=i]), "root of {}", i + 1);
            assert_eq!(
                tlog_tiles::tree_hash(i as u64 + 1, &MapReader(&mut stored.clone())).unwrap(),
                mth(&leaves[..=i])
            );
        }
    }

    struct MapReader<'a>(&'a mut HashMap<u64, Hash>);
    impl HashReader for MapReader<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            Ok(indexes.iter().map(|i| self.0[i]).collect())
        }
    }

    #[test]
    fn the_empty_tree_and_rfc_6962s_leaf_and_node_prefixes() {
        // SHA-256 of the empty string, RFC 6962 §2.1.
        assert_eq!(
            hex::encode(tree_root(&Frontier::default()).0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The known answers of the RFC 6962 test vectors (certificate-transparency-go's
        // merkle tests): the leaf hash of the empty leaf, and the root of the first leaf 0x00.
        assert_eq!(
            hex::encode(leaf_hash(b"").0),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(leaf_hash(&[0x00]).0),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
    }

    /// The RFC 6962 reference vectors (certificate-transparency's merkle test data): eight
    /// leaves and the root of every prefix.
    #[test]
    fn the_rfc_6962_reference_roots() {
        let leaves = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut f = Frontier::default();
        for (leaf, root) in leaves.iter().zip(roots) {
            f.push(leaf_hash(&hex::decode(leaf).unwrap()));
            assert_eq!(hex::encode(tree_root(&f).0), root, "size {}", f.size);
        }
    }

    #[test]
    fn checkpoints_are_signed_notes_and_verify_with_both_keys() {
        let (a, va) = generate_key("qingling.local/ledger");
        let (b, vb) = generate_key("audit.tongzhou");
        assert_eq!(verifier_key(&a).unwrap(), va);
        let keys = LogKeys::new("qingling.local/ledger", &[a, b]).unwrap();
        let root = leaf_hash(b"x");
        let note = keys.sign(7, &root).unwrap();
        assert!(note.starts_with(&format!("qingling.local/ledger\n7\n{}\n\n— ", b64(&root))));
        assert_eq!(note.matches("\n— ").count(), 2, "{note}");
        let (origin, size, got) = verify_checkpoint(&note, &[&va, &vb]).unwrap();
        assert_eq!(
            (origin.as_str(), size, got),
            ("qingling.local/ledger", 7, root)
        );
        let (_, other) = generate_key("qingling.local/ledger");
        assert!(verify_checkpoint(&note, &[&other]).is_err());
        let forged = note.replace("\n7\n", "\n8\n");
        assert!(verify_checkpoint(&forged, &[&va]).is_err());
    }
}
