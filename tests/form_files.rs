//! A form of thousands of file parts holds one of them open at a time: the process's open
//! descriptors are counted while the form is sent. (Alone in its binary, so no other test
//! opens descriptors meanwhile.)
#![cfg(feature = "sink")]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use chunkwire::Form;
use chunkwire::sink::Sink;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_form_of_2000_files_does_not_hold_them_all_open() {
    let files = 2000;
    let dir = std::env::temp_dir().join(format!("chunkwire-form-fds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut form = Form::new();
    for i in 0..files {
        let path = dir.join(format!("{i}.txt"));
        std::fs::write(&path, vec![b'x'; 3000 + i]).unwrap();
        form = form.file(format!("f{i}"), path);
    }
    let sink = Sink::bind("127.0.0.1:0").unwrap().spawn().unwrap();
    let client = chunkwire::Client::builder()
        .chunk_size(4096)
        .build()
        .unwrap();
    let before = open_descriptors();
    let most = Rc::new(Cell::new(0));
    let reports = Rc::new(Cell::new(0u32));
    let (seen, counted) = (Rc::clone(&most), Rc::clone(&reports));
    let mut response = client
        .upload(&sink.url("/many"))
        .method("POST")
        .progress(move |_| {
            seen.set(seen.get().max(open_descriptors()));
            counted.set(counted.get() + 1);
        })
        .send_form(form)
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().unwrap();
    let report = sink.next_report(Duration::from_secs(30)).unwrap();
    let data: u64 = (0..files as u64).map(|i| 3000 + i).sum();
    assert!(report.bytes > data, "{} bytes arrived", report.bytes);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{files} file parts: {before} descriptors before, at most {} while sending ({} reports)",
        most.get(),
        reports.get()
    );
    assert!(reports.get() > 1000, "progress was looked at throughout");
    // The socket, the event loop's poll and waker, the one file being read, the sink's
    // side of the connection and the count's own directory handle (6 as measured), with
    // room to spare: never thousands.
    assert!(
        most.get() <= before + 10,
        "{} descriptors open while sending, {before} before",
        most.get()
    );
}
