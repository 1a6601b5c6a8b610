"""Crawl an IMDS with cloud-init's EC2 datasource and print what it found.

Run with the interpreter that has cloud-init installed (Debian's
/usr/bin/python3). The datasource is built by hand, with every cloud-init
path under --tmp, so the host's own cloud-init state is never read or
written. Nothing is configured on the host: no DHCP, no network rendering,
no DMI changes. The platform is forced instead of read from DMI.

Output (stdout) is one JSON object:
  ok            the datasource's _get_data() result
  address       the metadata address it settled on
  api_version   the metadata API version it chose
  metadata      the crawled meta-data tree
  userdata_b64  user-data bytes, base64
  identity      the parsed instance identity document ({} when not crawled)
  instance_id   DataSourceEc2.get_instance_id() (only when ok)
  region        DataSourceEc2.region (only when ok)
  requests      every HTTP request cloud-init sent, in order:
                {method, url, token, ttl, status}
Log lines go to stderr.
"""

import argparse
import base64
import json
import logging
import sys

import requests

from cloudinit import distros, helpers, util
from cloudinit.sources import DataSourceEc2 as ec2ds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="IMDS base URL")
    parser.add_argument("--tmp", required=True, help="directory for state")
    parser.add_argument(
        "--platform",
        choices=["aws", "unknown"],
        default="aws",
        help="aws uses IMDSv2 tokens; unknown uses IMDSv1",
    )
    parser.add_argument("--max-wait", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args()

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG,
        format="%(levelname)s %(name)s: %(message)s",
    )

    # is_resolvable() first looks up names that must not exist to detect
    # DNS hijacking. The URL here is an IP literal, so skip those lookups:
    # no query may leave the machine.
    util._DNS_REDIRECT_IP = set()

    sent = []
    real_request = requests.Session.request

    def recording_request(self, method, url, *a, **kw):
        headers = {k.lower(): v for k, v in (kw.get("headers") or {}).items()}
        entry = {
            "method": method.upper(),
            "url": url,
            "token": "x-aws-ec2-metadata-token" in headers,
            "ttl": headers.get("x-aws-ec2-metadata-token-ttl-seconds"),
            "status": None,
        }
        sent.append(entry)
        resp = real_request(self, method, url, *a, **kw)
        entry["status"] = resp.status_code
        return resp

    requests.Session.request = recording_request

    paths = helpers.Paths(
        {
            "cloud_dir": args.tmp + "/cloud",
            "run_dir": args.tmp + "/run",
            "templates_dir": args.tmp + "/templates",
        }
    )
    sys_cfg = {
        "datasource": {
            "Ec2": {
                "metadata_urls": [args.url],
                "max_wait": args.max_wait,
                "timeout": args.timeout,
                "strict_id": False,
            }
        }
    }
    distro = distros.fetch("debian")("debian", {}, paths)
    ds = ec2ds.DataSourceEc2(sys_cfg, distro, paths)
    ds._cloud_name = (
        ec2ds.CloudNames.AWS
        if args.platform == "aws"
        else ec2ds.CloudNames.UNKNOWN
    )

    ok = bool(ds._get_data())
    out = {
        "ok": ok,
        "address": ds.metadata_address,
        "api_version": (ds._crawled_metadata or {}).get(
            "_metadata_api_version"
        ),
        "metadata": ds.metadata or {},
        "userdata_b64": base64.b64encode(ds.userdata_raw or b"").decode(),
        "identity": getattr(ds, "identity", None) or {},
        "requests": sent,
    }
    if ok:
        out["instance_id"] = ds.get_instance_id()
        out["region"] = ds.region
    json.dump(out, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
