//! X509-SVID and JWT-SVID minting.

use crate::harness::*;

pub(crate) fn minting(p: &mut Parity) {
    let pem_norm = |s: &str| norm_times(&norm_pem(s));
    let x509_json = |v: &mut serde_json::Value| {
        // The SVID, key and bundle certificates differ; their number must not.
        let Some(item) = v.as_array_mut().and_then(|a| a.first_mut()) else {
            return;
        };
        for field in ["x509_svid", "root_cas"] {
            let n = item[field].as_array().map_or(0, Vec::len);
            item[field] = serde_json::json!(n);
        }
        item["private_key"] = serde_json::json!("<key>");
    };
    for tail in [
        &["-spiffeID", "spiffe://example.org/minted"][..],
        &args("-spiffeID spiffe://example.org/minted -dns m.example -dns *.n.example -ttl 10m"),
        &args("-spiffeID spiffe://example.org/minted -ttl 48h"),
        &["-spiffeID", "spiffe://other.org/minted"],
        &["-spiffeID", "spiffe://example.org/spire/minted"],
        &["-spiffeID", "spiffe://example.org"],
        &args("-spiffeID spiffe://example.org/minted -dns é.example"),
        &args("-spiffeID spiffe://example.org/minted -dns bad_label"),
        &args("-spiffeID spiffe://example.org/minted -dns *.a.example -dns b.a.example"),
        &["-spiffeID", ""],
    ] {
        let mut args = vec!["x509", "mint"];
        args.extend_from_slice(tail);
        p.both_n(&args, &pem_norm, &x509_json);
    }
    // -write: the files' modes and shapes.
    {
        let args = [
            "x509",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-write",
            "{dir}/mint",
        ];
        let files = |side: &Side| {
            let dir = side.server.dir.path().join("mint");
            std::fs::create_dir_all(&dir).unwrap();
            let out = side.run(&args, b"");
            let files: Vec<(String, u32, String)> = ["svid.pem", "key.pem", "bundle.pem"]
                .iter()
                .map(|f| {
                    let path = dir.join(f);
                    (f.to_string(), mode(&path), norm_pem(&read(&path)))
                })
                .collect();
            (out, files)
        };
        let (r, rf) = files(&p.r);
        let (o, of) = files(&p.o);
        p.d.same("x509 mint -write", &r, &o, &norm_times);
        p.d.count += 1;
        if rf != of {
            p.d.failures.push(format!(
                "x509 mint -write files\n  reference: {rf:?}\n  ours:      {of:?}\n"
            ));
        }
    }
    let jwt_norm = |s: &str| norm_times(&norm_jwt(s));
    for tail in [
        &args("-spiffeID spiffe://example.org/minted -audience a")[..],
        &args("-spiffeID spiffe://example.org/minted -audience a -audience b -ttl 48h"),
        &args("-spiffeID spiffe://example.org/minted -audience a -ttl 30s"),
        &args("-spiffeID spiffe://other.org/minted -audience a"),
        &args("-spiffeID spiffe://example.org/spire/x -audience a"),
        &args("-spiffeID spiffe://example.org -audience a"),
        &["-spiffeID", "spiffe://example.org/minted"],
        &["-spiffeID", "spiffe://example.org/minted", "-audience", ""],
    ] {
        let mut args = vec!["jwt", "mint"];
        args.extend_from_slice(tail);
        p.both_n(&args, &jwt_norm, &|v| {
            blank_fields(v, &["token", "expires_at", "issued_at"]);
        });
    }
    // The minted JWT's claims (not its signature) must match.
    let claims = |side: &Side| {
        let out = side.run_raw(
            &args(
                "jwt mint -spiffeID spiffe://example.org/minted -audience a -audience b -ttl 10m",
            ),
            b"",
        );
        let token = out.stdout.trim();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "not a JWT: {out:?}");
        use base64::Engine as _;
        let decode = |s: &str| -> serde_json::Value {
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .unwrap(),
            )
            .unwrap()
        };
        let mut header = decode(parts[0]);
        let mut body = decode(parts[1]);
        blank_fields(&mut header, &["kid"]);
        let exp = body["exp"].as_i64().unwrap_or(0) - body["iat"].as_i64().unwrap_or(0);
        blank_fields(&mut body, &["exp", "iat"]);
        body["exp-iat"] = serde_json::json!(exp);
        Out {
            stdout: format!("{header}\n{body}\n"),
            stderr: norm_times(&out.stderr),
            code: out.code,
        }
    };
    let (r, o) = (claims(&p.r), claims(&p.o));
    p.d.same("jwt mint: header and claims", &r, &o, &norm_times);
    {
        let args = [
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "a",
            "-write",
            "{dir}/token.jwt",
        ];
        let file = |side: &Side| {
            let out = side.run(&args, b"");
            let path = side.server.dir.path().join("token.jwt");
            (out, mode(&path), norm_jwt(&read(&path)))
        };
        let (r, rm, rt) = file(&p.r);
        let (o, om, ot) = file(&p.o);
        p.d.same("jwt mint -write", &r, &o, &norm_times);
        p.d.count += 1;
        if (rm, &rt) != (om, &ot) {
            p.d.failures.push(format!(
                "jwt mint -write file\n  reference: {rm:o} {rt:?}\n  ours:      {om:o} {ot:?}\n"
            ));
        }
    }
}
