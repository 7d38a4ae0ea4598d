"""The Python contenders of the form benchmark (src/form.rs): one form upload of a file part
and two text fields, the response body written to OUT.

    python3 form_clients.py files|toolbelt URL FILE OUT

files: requests' own `files=`, which builds the whole body in memory first.
toolbelt: requests-toolbelt's MultipartEncoder, which streams the parts."""

import os
import sys

import requests

FIELDS = {"title": "benchmark upload", "note": "a 1 GiB file and two text fields"}


def main():
    mode, url, path, out = sys.argv[1:5]
    name = os.path.basename(path)
    with open(path, "rb") as f:
        if mode == "files":
            response = requests.post(
                url, data=FIELDS, files={"file": (name, f, "application/octet-stream")}
            )
        elif mode == "toolbelt":
            from requests_toolbelt import MultipartEncoder

            fields = dict(FIELDS)
            fields["file"] = (name, f, "application/octet-stream")
            encoder = MultipartEncoder(fields=fields)
            response = requests.post(
                url, data=encoder, headers={"Content-Type": encoder.content_type}
            )
        else:
            sys.exit(f"unknown mode {mode}")
    with open(out, "wb") as o:
        o.write(response.content)
    if response.status_code != 200:
        sys.exit(f"status {response.status_code}: {response.text[:200]}")


if __name__ == "__main__":
    main()
