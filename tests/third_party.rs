//! Uploads checked by an HTTP/1.1 server no one here wrote (tiny_http and its chunked
//! decoder), so chunkwire is not only checked against its own decoder.

use std::sync::mpsc;
use std::thread;

/// What the third-party server saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Serves `requests` requests on a tiny_http server, answering 201 with "got N".
fn server(requests: usize) -> (String, mpsc::Receiver<Seen>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let (sender, seen) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..requests {
            let mut request = server.recv().unwrap();
            let mut body = Vec::new();
            request.as_reader().read_to_end(&mut body).unwrap();
            let reply = format!("got {}", body.len());
            sender
                .send(Seen {
                    method: request.method().to_string(),
                    url: request.url().to_owned(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                })
                .unwrap();
            request
                .respond(tiny_http::Response::from_string(reply).with_status_code(201))
                .unwrap();
        }
    });
    (format!("http://{addr}"), seen)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
        .collect()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn chunked_uploads_arrive_intact_at_tiny_http() {
    let chunk = 16 * 1024;
    let sizes = [0, 1, chunk - 1, chunk, chunk + 1, 5 * 1024 * 1024 + 3];
    let (base, seen) = server(sizes.len());
    let client = chunkwire::Client::builder()
        .chunk_size(chunk)
        .build()
        .unwrap();
    for len in sizes {
        let data = pattern(len);
        let mut response = client
            .upload(&format!("{base}/files/{len}?tag=x"))
            .method("POST")
            .header("X-Test", "third party")
            .send(&data[..])
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.text().unwrap(), format!("got {len}"));
        assert!(response.upload_complete());
        let seen = seen.recv().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.url, format!("/files/{len}?tag=x"));
        assert_eq!(header(&seen, "X-Test"), Some("third party"));
        assert_eq!(header(&seen, "Transfer-Encoding"), Some("chunked"));
        assert!(header(&seen, "Host").unwrap().starts_with("127.0.0.1:"));
        assert_eq!(seen.body.len(), len);
        assert!(seen.body == data, "body of {len} bytes differs");
    }
}

#[test]
fn content_length_uploads_arrive_intact_at_tiny_http() {
    let (base, seen) = server(2);
    let client = chunkwire::Client::builder()
        .chunk_size(1000)
        .build()
        .unwrap();
    for len in [0usize, 123_457] {
        let data = pattern(len);
        let response = client
            .upload(&format!("{base}/cl"))
            .content_length(len as u64)
            .send(&data[..])
            .unwrap();
        assert_eq!(response.status(), 201);
        let seen = seen.recv().unwrap();
        assert_eq!(seen.method, "PUT");
        assert_eq!(
            header(&seen, "Content-Length"),
            Some(len.to_string().as_str())
        );
        assert_eq!(header(&seen, "Transfer-Encoding"), None);
        assert!(seen.body == data);
    }
}
