"""Request signatures, pure: the Yealink reference vectors and Hawk's normalised string."""

from __future__ import annotations

from reconciler.redirect.clients.sraps import (
    hawk_header,
    hawk_mac,
    normalized_string,
    parse_hawk_attributes,
    payload_hash,
    timestamp_mac,
)
from reconciler.redirect.clients.yealink import sign_headers, string_to_sign
from reconciler.redirect.http import SignInput

AK, SK = "2df23f2d9c255e7138dc603b3847b58a", "d4a4be460a8d43609d8e8a5e7d0d4ad1"


def test_yealink_post_vector_from_the_vendor_document():
    headers = sign_headers(
        "POST", "/api/open/v1/server/list", (), b'{"key":"TestServer","skip":0}',
        access_key=AK, secret=SK, timestamp_ms=1544008291631,
        nonce="b681e77450a04d22aaffc914a3379561",
    )
    assert headers["Content-MD5"] == "SsPhq3/DEuS3yHj3kYOV9w=="
    assert headers["X-Ca-Signature"] == "JVPj8C4CVKbFJW6A33yZcdSsde7Hfxy9EoJiE0epeKM="


def test_yealink_get_vector_from_the_vendor_document():
    headers = sign_headers(
        "GET", "/api/open/v1/device/checkMac", [("mac", "001565123123")], b"",
        access_key=AK, secret=SK, timestamp_ms=1544094691000,
        nonce="9e730a223b48433785494801fb016d39",
    )
    assert "Content-MD5" not in headers
    assert headers["X-Ca-Signature"] == "+speRmYv89rutzPc9u5Ij1JrtnrUw7nhJnqQfD1h5AU="


def test_yealink_string_to_sign_sorts_query_and_headers_and_keeps_values_unencoded():
    text = string_to_sign(
        "get", {"X-Ca-Nonce": "n", "X-Ca-Key": "k", "X-Ca-Timestamp": "1"},
        "/api/open/v1/server/checkServerName", [("serverName", "a b"), ("flag", "")],
    )
    assert text == (
        "GET\nX-Ca-Key:k\nX-Ca-Nonce:n\nX-Ca-Timestamp:1\n"
        "api/open/v1/server/checkServerName\nflag&serverName=a b"
    )


def test_yealink_get_without_query_has_no_trailing_newline():
    assert string_to_sign("GET", {"X-Ca-Key": "k"}, "/api/open/v1/device/serverList") == (
        "GET\nX-Ca-Key:k\napi/open/v1/device/serverList"
    )


def test_hawk_normalised_string_layout():
    assert normalized_string(1353832234, "j4h3g2", "get", "/resource/1?b=1&a=2",
                             "Example.com", 8000) == (
        "hawk.1.header\n1353832234\nj4h3g2\nGET\n/resource/1?b=1&a=2\nexample.com\n8000\n\n\n"
    )


def test_hawk_reference_example():
    # The Hawk README's example: id "dh37fgj492je",
    # key "werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn", sha256,
    # GET http://example.com:8000/resource/1?b=1&a=2, ts 1353832234, nonce j4h3g2,
    # ext "some-app-ext-data" -> mac "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=".
    normalized = normalized_string(1353832234, "j4h3g2", "GET", "/resource/1?b=1&a=2",
                                   "example.com", 8000, "", "some-app-ext-data")
    assert hawk_mac("werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn", normalized) == (
        "6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="
    )


def test_hawk_payload_hash_ignores_content_type_parameters():
    assert payload_hash("application/json; charset=utf-8", b"{}") == payload_hash(
        "Application/JSON", b"{}"
    )


def test_hawk_header_carries_a_hash_only_with_a_body():
    get = SignInput("GET", "https", "api.sraps.snom.com", 443, "/api/v1/settings/",
                    "/api/v1/settings/?page_size=1000", (("page_size", "1000"),), b"", "")
    attrs = parse_hawk_attributes(hawk_header("id1", "s3cret", get, 1700000000, "abc"))
    assert set(attrs) == {"id", "ts", "nonce", "mac"}
    put = SignInput("PUT", "https", "api.sraps.snom.com", 443, "/x", "/x", (), b"{}",
                    "application/json")
    attrs = parse_hawk_attributes(hawk_header("id1", "s3cret", put, 1700000000, "abc"))
    assert attrs["hash"] == payload_hash("application/json", b"{}")


def test_timestamp_mac_is_the_hawk_ts_message():
    assert timestamp_mac("k", "1") == hawk_mac("k", "hawk.1.ts\n1\n")
