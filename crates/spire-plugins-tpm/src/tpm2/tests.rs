//! Unit tests: structure decoding and credential activation done in reverse.

use super::*;

fn rsa_public(attrs: u32, scheme: u16, hash: u16, modulus: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(alg::RSA).u16(alg::SHA256).u32(attrs).tpm2b(&[]);
    w.u16(alg::NULL).u16(scheme);
    if scheme != alg::NULL {
        w.u16(hash);
    }
    w.u16(2048).u32(0).tpm2b(modulus);
    w.0
}

#[test]
fn decodes_rsa_public_and_names_it() {
    let raw = rsa_public(attr::SIGN, alg::RSASSA, alg::SHA256, &[7u8; 256]);
    let p = Public::decode(&raw).unwrap();
    assert_eq!(p.signing_scheme().unwrap().hash, alg::SHA256);
    let (n, e) = p.rsa().unwrap();
    assert_eq!(n, &[7u8; 256][..]);
    assert_eq!(e, vec![0x01, 0x00, 0x01]);
    let name = p.name().unwrap();
    assert_eq!(&name[..2], &[0x00, 0x0B]);
    assert_eq!(
        &name[2..],
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &raw).as_ref()
    );
}

#[test]
fn rejects_truncated_trailing_and_unknown_public() {
    let raw = rsa_public(attr::SIGN, alg::RSASSA, alg::SHA256, &[7u8; 256]);
    assert_eq!(Public::decode(&raw[..raw.len() - 1]), Err(Tpm2Error::Short));
    let mut longer = raw.clone();
    longer.push(0);
    assert_eq!(Public::decode(&longer), Err(Tpm2Error::Trailing(1)));
    let mut keyed = raw;
    keyed[1] = 0x08;
    assert_eq!(Public::decode(&keyed), Err(Tpm2Error::KeyType(0x0008)));
    assert_eq!(Public::decode(&[]), Err(Tpm2Error::Short));
}

#[test]
fn non_signing_key_has_no_signing_scheme() {
    let p = Public::decode(&rsa_public(attr::DECRYPT, alg::NULL, 0, &[1; 8])).unwrap();
    assert_eq!(p.signing_scheme(), Err("not a signing key"));
}

fn attest(kind: u16, magic: u32, name: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(magic).u16(kind).tpm2b(b"signer").tpm2b(&[]);
    w.raw(&[0u8; 17]).raw(&[0u8; 8]);
    w.tpm2b(name).tpm2b(b"qualified");
    w.0
}

#[test]
fn certified_name_checks_magic_and_type() {
    assert_eq!(
        certified_name(&attest(0x8017, GENERATED_VALUE, b"nm")).unwrap(),
        b"nm".to_vec()
    );
    assert!(
        certified_name(&attest(0x8017, 1, b"nm"))
            .unwrap_err()
            .contains("incorrect magic")
    );
    assert_eq!(
        certified_name(&attest(0x8018, GENERATED_VALUE, b"nm")).unwrap_err(),
        "missing certify info"
    );
    assert!(certified_name(&[0xff]).is_err());
}

#[test]
fn kdfa_matches_sp800_108_single_block() {
    // One block: HMAC(key, 00000001 || label || 00 || u || v || bits).
    let out = kdfa(alg::SHA256, b"key", "STORAGE", b"u", b"", 128).unwrap();
    let mut m = vec![0, 0, 0, 1];
    m.extend(b"STORAGE\0u");
    m.extend(128u32.to_be_bytes());
    let k = hmac::Key::new(hmac::HMAC_SHA256, b"key");
    assert_eq!(out, hmac::sign(&k, &m).as_ref()[..16].to_vec());
    assert_eq!(
        kdfa(alg::SHA256, b"k", "X", &[], &[], 512).unwrap().len(),
        64
    );
    assert_eq!(
        kdfa(alg::SHA256, b"k", "X", &[], &[], 12).unwrap()[0] & 0xF0,
        0
    );
}

/// Undoes `make_credential` as the TPM's ActivateCredential does, with the EK private key.
#[test]
fn make_credential_round_trips_through_activation() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{
        KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey,
    };
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let spki = private.public_key().as_der().unwrap();
    let mut ak_name = alg::SHA256.to_be_bytes().to_vec();
    ak_name.extend([9u8; 32]);
    let seed = [5u8; 16];
    let nonce = [3u8; 32];
    let cred = make_credential(&ak_name, spki.as_ref(), &seed, &nonce).unwrap();

    let oaep = OaepPrivateDecryptingKey::new(private).unwrap();
    let mut out = vec![0u8; oaep.min_output_size()];
    let got_seed = oaep
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            &cred.secret,
            &mut out,
            Some(b"IDENTITY\0"),
        )
        .unwrap()
        .to_vec();
    assert_eq!(got_seed, seed);

    let mut r = Reader::new(&cred.id_object);
    let integrity = r.tpm2b().unwrap().to_vec();
    let mut enc = r.rest().to_vec();
    let mac_key = kdfa(alg::SHA256, &got_seed, "INTEGRITY", &[], &[], 256).unwrap();
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &mac_key));
    ctx.update(&enc);
    ctx.update(&ak_name);
    assert_eq!(ctx.sign().as_ref(), integrity.as_slice());
    let sym = kdfa(alg::SHA256, &got_seed, "STORAGE", &ak_name, &[], 128).unwrap();
    aes_cfb(&sym, &mut enc, false).unwrap();
    assert_eq!(Reader::new(&enc).tpm2b().unwrap(), nonce);

    assert!(make_credential(&[0, 4, 1], spki.as_ref(), &seed, &nonce).is_err());
    assert!(make_credential(&ak_name, b"not a key", &seed, &nonce).is_err());
}
