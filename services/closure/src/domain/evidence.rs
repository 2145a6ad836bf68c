//! Which uploads are photos the system keeps: the image types recognised by their bytes, whole.
//! Pure: no I/O.

/// The largest photo accepted unless `QINGLING_EVIDENCE_MAX_BYTES` says otherwise.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// `QINGLING_EVIDENCE_MAX_BYTES`.
pub fn max_bytes() -> usize {
    std::env::var("QINGLING_EVIDENCE_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// The image types accepted, recognised by their bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Whether an image of `content_type` is whole: a JPEG ends with its end marker, a PNG with its
/// IEND chunk, a WebP is as long as its RIFF header says.
pub fn is_whole(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "image/jpeg" => bytes.len() > 4 && bytes.ends_with(&[0xFF, 0xD9]),
        "image/png" => bytes.len() > 20 && bytes[bytes.len() - 8..bytes.len() - 4] == *b"IEND",
        "image/webp" => {
            let size = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            size + 8 == bytes.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_bytes_and_must_be_whole() {
        let jpeg = [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[7; 20], &[0xFF, 0xD9]].concat();
        assert_eq!(sniff(&jpeg), Some("image/jpeg"));
        assert!(is_whole("image/jpeg", &jpeg));
        assert!(
            !is_whole("image/jpeg", &jpeg[..jpeg.len() - 1]),
            "cut short"
        );
        let png = [
            &b"\x89PNG\r\n\x1a\n"[..],
            &[1; 20],
            b"IEND",
            &[0xAE, 0x42, 0x60, 0x82],
        ]
        .concat();
        assert_eq!(sniff(&png), Some("image/png"));
        assert!(is_whole("image/png", &png));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
        webp.extend([0; 8]);
        let size = (webp.len() - 8) as u32;
        webp[4..8].copy_from_slice(&size.to_le_bytes());
        assert_eq!(sniff(&webp), Some("image/webp"));
        assert!(is_whole("image/webp", &webp));
        assert!(!is_whole("image/webp", &webp[..webp.len() - 2]));
        for not_an_image in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
            b"<html>",
            b"#!/bin/sh",
            b"",
        ] {
            assert_eq!(sniff(not_an_image), None);
        }
    }
}
