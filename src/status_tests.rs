use super::*;

/// A mount with one of everything `status` can show: every transfer state, a failure, both
/// caches, a profile, a log and errors.
const BUSY: &str = r#"{"mountpoint":"/mnt/ftp","source":"ftp://user@example.com/","pid":4242,"uptime_seconds":3725,"sessions":{"open":3,"busy":2,"limit":4,"max":5,"waiting":1},"listing_cache_hits":30,"listing_cache_misses":10,"transfers":[{"path":"/a.bin","direction":"download","bytes":3145728,"state":"streaming","seconds":2.0},{"path":"/b.bin","direction":"upload","bytes":1048576,"state":"streaming","seconds":0.0},{"path":"/c.txt","direction":"upload","bytes":6,"state":"spooled, uploads at close","seconds":1.5},{"path":"/d.txt","direction":"upload","bytes":null,"state":"busy","seconds":0.25},{"path":"/e.txt","direction":"upload","bytes":null,"state":"closing (write-back)","seconds":0.0},{"path":"/f.txt","direction":"upload","bytes":null,"state":"uploading (write-back)","seconds":0.0},{"path":"/g.txt","direction":"upload","bytes":null,"state":"queued (write-back)","seconds":0.0}],"queued_uploads":4,"failed_uploads":["ro/x.bin: permission denied: 553 no (data kept in /q/failed/1.data)","y: no space (data kept in nowhere: it could not be moved)"],"recent_errors":["2024-01-02 03:04:05Z upload: permission denied"],"log_file":"/run/user/1000/ftpmount/ab.log","server_profile":[["listing","MLSD"],["times","MFMT"]],"content_cache":{"hit_bytes":2048,"miss_bytes":5242880,"used":1073741824,"limit":2147483648,"files":7},"prefetch":{"hits":2,"hit_bytes":4096,"files":3,"bytes":8192,"unused_bytes":0,"waiting_bytes":1024,"walks":1,"max_files":64},"memory":{"resident_bytes":60817408,"inodes":100001,"listings":3,"listing_entries":100012}}"#;

/// A mount with nothing to show.
const IDLE: &str = r#"{"mountpoint":"/mnt/idle","source":"ftps://example.com/","pid":7,"uptime_seconds":59,"sessions":{"open":0,"busy":0,"limit":2,"max":2,"waiting":0},"listing_cache_hits":0,"listing_cache_misses":0,"transfers":[],"queued_uploads":0,"failed_uploads":[],"recent_errors":[],"log_file":null,"server_profile":[],"content_cache":null,"prefetch":null,"memory":null}"#;

#[test]
fn the_status_json_reads_and_writes_back_unchanged() {
    for json in [BUSY, IDLE] {
        let st: MountStatus = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&st).unwrap(), json);
    }
}

#[test]
fn the_text_form_shows_everything() {
    let st: MountStatus = serde_json::from_str(BUSY).unwrap();
    assert_eq!(
        render(&st),
        concat!(
            "/mnt/ftp  ftp://user@example.com/  (pid 4242, up 1h 2m)\n",
            "  sessions: 3 open, 2 busy, limit 4 (--max-connections 5), 1 waiting\n",
            "  listing cache: 30 hits, 10 misses (75% hits)\n",
            "  memory: 58 MiB resident; 100001 inodes held by the kernel; 3 listings cached (100012 entries)\n",
            "  content cache: 1.0 GiB in 7 files (limit 2.0 GiB); 2.0 KiB read from it, 5.0 MiB downloaded\n",
            "  prefetch: 2 hits (4.0 KiB); 3 files (8.0 KiB) fetched ahead, 0 B never read, 1.0 KiB waiting; ",
            "1 walks (up to 64 files ahead)\n",
            "  server profile:\n",
            "    listing: MLSD\n",
            "    times: MFMT\n",
            "  transfers:\n",
            "    download /a.bin  3.0 MiB in 2.0 s (1.5 MiB/s)  streaming\n",
            "    upload   /b.bin  1.0 MiB  streaming\n",
            "    upload   /c.txt  6 B in 1.5 s (4 B/s)  spooled, uploads at close\n",
            "    upload   /d.txt  (busy)  busy\n",
            "    upload   /e.txt  (busy)  closing (write-back)\n",
            "    upload   /f.txt  (busy)  uploading (write-back)\n",
            "    upload   /g.txt  (busy)  queued (write-back)\n",
            "  queued uploads: 4\n",
            "  failed uploads:\n",
            "    ro/x.bin: permission denied: 553 no (data kept in /q/failed/1.data)\n",
            "    y: no space (data kept in nowhere: it could not be moved)\n",
            "  log: /run/user/1000/ftpmount/ab.log\n",
            "  last errors:\n",
            "    2024-01-02 03:04:05Z upload: permission denied\n",
        )
    );
}

#[test]
fn the_text_form_of_an_idle_mount() {
    let st: MountStatus = serde_json::from_str(IDLE).unwrap();
    assert_eq!(
        render(&st),
        concat!(
            "/mnt/idle  ftps://example.com/  (pid 7, up 59s)\n",
            "  sessions: 0 open, 0 busy, limit 2 (--max-connections 2), 0 waiting\n",
            "  listing cache: 0 hits, 0 misses (0% hits)\n",
            "  content cache: off\n",
            "  prefetch: off\n",
            "  transfers: none\n",
            "  queued uploads: 0\n",
            "  last errors: none\n",
        )
    );
}

/// The status socket's wire format and `status`'s text: a renamed variant must fail here.
#[test]
fn transfer_names_are_todays_strings() {
    use crate::fs::{Direction, TransferState};
    fn same<T>(value: T, name: &str)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_value(&value).unwrap(), serde_json::Value::from(name));
        assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), value);
        assert_eq!(value.to_string(), name);
    }
    same(Direction::Download, "download");
    same(Direction::Upload, "upload");
    same(TransferState::Streaming, "streaming");
    same(TransferState::Spooled, "spooled, uploads at close");
    same(TransferState::Busy, "busy");
    same(TransferState::Closing, "closing (write-back)");
    same(TransferState::Uploading, "uploading (write-back)");
    same(TransferState::Queued, "queued (write-back)");
}

#[test]
fn sync_waits_for_the_write_back_queue_and_status_counts_spooled_files_too() {
    use crate::fs::TransferState::*;
    for (state, write_back, waits) in [
        (Streaming, false, false),
        (Spooled, false, true),
        (Busy, false, false),
        (Closing, true, true),
        (Uploading, true, true),
        (Queued, true, true),
    ] {
        assert_eq!(state.is_write_back(), write_back, "{state}");
        assert_eq!(state.waits_for_upload(), waits, "{state}");
    }
}

/// The line the log, `status` and `sync` show, and the status socket sends, for a failure.
#[test]
fn a_failed_upload_reads_as_todays_line() {
    use crate::fs::writeback::FailedUpload;
    let kept = FailedUpload {
        path: "ro/x.bin".into(),
        error: "permission denied: 553 no".into(),
        kept_in: Some("/q/failed/1.data".into()),
    };
    assert_eq!(kept.to_string(), "ro/x.bin: permission denied: 553 no (data kept in /q/failed/1.data)");
    let lost = FailedUpload { path: "y".into(), error: "no space".into(), kept_in: None };
    assert_eq!(lost.to_string(), "y: no space (data kept in nowhere: it could not be moved)");
}
