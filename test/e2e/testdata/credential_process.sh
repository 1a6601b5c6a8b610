#!/bin/sh
# A credential_process program for the e2e tests, run by imds serve as a
# role's process source:
#
#   credential_process.sh DIR LIFETIME ROLE INSTANCE DELIVERY
#
# It prints the AWS CLI's credential_process JSON (Version 1) expiring
# LIFETIME seconds from now. The keys name the delivery and the run (its
# process id), the secret and the session token also the role and the
# instance, so that a test can tell every set apart and see the arguments.
# It prints AccountId when the file DIR/account holds one. While DIR/fail
# exists it prints a message on stderr and exits 3 instead.
set -eu

dir=$1 life=$2 role=$3 instance=$4 delivery=$5

if [ -e "$dir/fail" ]; then
	echo "credential broker unavailable: do not log this" >&2
	exit 3
fi

run=$$
v=${delivery%.0}
expiration=$(date -u -d "@$(($(date +%s) + life))" +%Y-%m-%dT%H:%M:%SZ)
account=""
if [ -s "$dir/account" ]; then
	account=$(cat "$dir/account")
fi

printf '{\n'
printf '  "Version": 1,\n'
printf '  "AccessKeyId": "ASIAPROCV%sR%s",\n' "$v" "$run"
printf '  "SecretAccessKey": "proc-secret-%s-%s-%s-%s",\n' "$role" "$instance" "$delivery" "$run"
printf '  "SessionToken": "proc-token-%s-%s-%s-%s",\n' "$role" "$instance" "$delivery" "$run"
if [ -n "$account" ]; then
	printf '  "AccountId": "%s",\n' "$account"
fi
printf '  "Expiration": "%s"\n' "$expiration"
printf '}\n'
