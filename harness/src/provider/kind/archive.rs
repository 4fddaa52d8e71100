//! Picking members out of a downloaded `.tgz` before it reaches the nodes: kind's node images
//! carry their own CNI plugins (host-local, loopback, ptp, portmap), which a whole release archive
//! would overwrite; only the members a CNI needs (flannel: `bridge`) are kept.

use std::io::Read;

/// An uncompressed tar holding only the regular files of `tgz` whose base name is in `members`
/// (each found exactly once), ready for `tar -x` on a node.
pub fn select_members(tgz: &[u8], members: &[String]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut out = tar::Builder::new(Vec::new());
    let mut found: Vec<&str> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| format!("reading the archive: {e}"))?
            .into_owned();
        let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(m) = members.iter().find(|m| m.as_str() == base) else {
            continue;
        };
        if found.contains(&m.as_str()) {
            return Err(format!("the archive holds {m} twice"));
        }
        found.push(m.as_str());
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("reading {m} from the archive: {e}"))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(entry.header().mode().unwrap_or(0o755));
        header.set_cksum();
        out.append_data(&mut header, m, data.as_slice())
            .map_err(|e| format!("repacking {m}: {e}"))?;
    }
    let missing: Vec<&String> = members
        .iter()
        .filter(|m| !found.contains(&m.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the archive has no {}",
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.into_inner().map_err(|e| format!("repacking: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tgz shaped like a CNI plugins release (`./bridge`, `./ptp`, …).
    fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        let raw = b.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip");
        gz.finish().expect("gzip")
    }

    fn names(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let mut d = Vec::new();
                e.read_to_end(&mut d).expect("read");
                (
                    e.path().expect("path").display().to_string(),
                    d,
                    e.header().mode().expect("mode"),
                )
            })
            .collect()
    }

    #[test]
    fn only_the_named_members_are_kept() {
        let src = tgz(&[
            ("./bridge", b"BRIDGE"),
            ("./ptp", b"PTP"),
            ("./loopback", b"LO"),
        ]);
        let out = select_members(&src, &["bridge".into()]).expect("selects");
        assert_eq!(
            names(&out),
            [("bridge".to_string(), b"BRIDGE".to_vec(), 0o755)]
        );
    }

    #[test]
    fn a_missing_member_or_garbage_is_an_error() {
        let src = tgz(&[("./ptp", b"PTP")]);
        assert_eq!(
            select_members(&src, &["bridge".into()]),
            Err("the archive has no bridge".into())
        );
        assert!(select_members(b"not gzip", &["bridge".into()]).is_err());
    }
}
