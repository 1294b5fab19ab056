//! The `x509 mint` and `jwt mint` commands.

use crate::harness::*;

pub(crate) fn minting(c: &mut Ctx) {
    let pem_norm = |s: &str| norm_times(&norm_pem(s));
    c.cmp_norm(
        &args("x509 mint -spiffeID spiffe://example.org/minted"),
        b"",
        &pem_norm,
    );
    c.cmp_norm(
        &args("x509 mint -spiffeID spiffe://example.org/minted -dns m.example -dns n.example -ttl 10m"),
        b"",
        &pem_norm,
    );
    c.cmp_norm(
        &args("x509 mint -spiffeID spiffe://example.org/minted -ttl 48h"),
        b"",
        &pem_norm,
    );
    c.cmp_json_norm(
        &args("x509 mint -spiffeID spiffe://example.org/minted -output json"),
        b"",
        &|v| {
            // The SVID and key differ; the shape and the bundle must not.
            let item = &mut v[0];
            let n = item["x509_svid"].as_array().map_or(0, Vec::len);
            item["x509_svid"] = serde_json::json!(n);
            item["private_key"] = serde_json::json!("<key>");
        },
    );
    c.cmp(&args("x509 mint -spiffeID spiffe://other.org/minted"));
    c.cmp(&args(
        "x509 mint -spiffeID spiffe://example.org/minted -dns é.example",
    ));
    {
        let dir = c.tmp.path().join("mint");
        std::fs::create_dir_all(&dir).unwrap();
        let ds = dir.display().to_string();
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            &ds,
        ];
        let r = c.theirs(&args);
        let ref_files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
            .iter()
            .map(|f| {
                let p = dir.join(f);
                (f.to_string(), mode(&p), norm_pem(&read(&p)))
            })
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let o = c.ours_in(&args, b"");
        c.d.same("x509 mint -write", &r, &o, &ident);
        let our_files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
            .iter()
            .map(|f| {
                let p = dir.join(f);
                (f.to_string(), mode(&p), norm_pem(&read(&p)))
            })
            .collect();
        c.d.count += 1;
        if ref_files != our_files {
            c.d.failures.push(format!(
                "x509 mint -write files\n  reference: {ref_files:?}\n  ours:      {our_files:?}\n"
            ));
        }
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            "/nonexistent/dir",
        ];
        c.cmp(&args);
    }
    c.cmp_norm(
        &args("jwt mint -spiffeID spiffe://example.org/minted -audience a"),
        b"",
        &norm_jwt,
    );
    c.cmp_norm(
        &args("jwt mint -spiffeID spiffe://example.org/minted -audience a -audience b -ttl 48h"),
        b"",
        &|s| norm_times(&norm_jwt(s)),
    );
    c.cmp_json_norm(
        &args("jwt mint -spiffeID spiffe://example.org/minted -audience a -output json"),
        b"",
        &|v| blank_fields(v, &["token", "expires_at", "issued_at"]),
    );
    c.cmp(&args(
        "jwt mint -spiffeID spiffe://other.org/minted -audience a",
    ));
    {
        let file = c.tmp.path().join("token.jwt");
        let fs = file.display().to_string();
        let args = [
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-write",
            &fs,
        ];
        let r = c.theirs(&args);
        let ref_file = (mode(&file), norm_jwt(&read(&file)));
        std::fs::remove_file(&file).unwrap();
        let o = c.ours_in(&args, b"");
        c.d.same("jwt mint -write", &r, &o, &ident);
        let our_file = (mode(&file), norm_jwt(&read(&file)));
        c.d.count += 1;
        if ref_file != our_file {
            c.d.failures.push(format!(
                "jwt mint -write file\n  reference: {ref_file:?}\n  ours:      {our_file:?}\n"
            ));
        }
    }
}
