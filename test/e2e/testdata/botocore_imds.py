"""Resolve credentials and region the way botocore does on an EC2 instance.

The caller points botocore at the IMDS under test with
AWS_EC2_METADATA_SERVICE_ENDPOINT and clears every other credential source
(AWS_* variables, HOME, config files), so the default credential chain can
only end at the instance role.

Output (stdout) is one JSON object:
  method         credential provider that answered ("iam-role"), or null
  access_key     access key id, or null
  secret_key     secret access key, or null
  token          session token, or null
  expiry         the credentials' expiry time (ISO 8601), or null
  region         region from botocore's IMDS region provider, or null
  error          the exception botocore raised while resolving
                 credentials, or null
  region_error   the exception the region provider raised, or null
"""

import json
import sys

import botocore.session
from botocore.exceptions import BotoCoreError
from botocore.utils import IMDSRegionProvider


def main():
    session = botocore.session.get_session()
    out = {
        "method": None,
        "access_key": None,
        "secret_key": None,
        "token": None,
        "expiry": None,
        "region": None,
        "error": None,
        "region_error": None,
    }
    try:
        creds = session.get_credentials()
    except BotoCoreError as e:
        creds = None
        out["error"] = "%s: %s" % (type(e).__name__, e)
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        out["method"] = creds.method
        out["access_key"] = frozen.access_key
        out["secret_key"] = frozen.secret_key
        out["token"] = frozen.token
        expiry = getattr(creds, "_expiry_time", None)
        if expiry is not None:
            out["expiry"] = expiry.isoformat()
    try:
        out["region"] = IMDSRegionProvider(session).provide()
    except BotoCoreError as e:
        out["region_error"] = "%s: %s" % (type(e).__name__, e)
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
