package metadata

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// TimeFormat is how EC2 writes times in metadata JSON: whole seconds, UTC.
const TimeFormat = "2006-01-02T15:04:05Z"

// Field is one member of a JSON object in EC2's layout. Value is a string, nil
// (JSON null) or []string.
type Field struct {
	Key   string
	Value any
}

// PrettyJSON writes an object the way EC2 does: two-space indent, " : " between
// key and value, members in the given order, no trailing newline.
func PrettyJSON(fields ...Field) []byte {
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, f := range fields {
		b.WriteString("  ")
		writeJSONString(&b, f.Key)
		b.WriteString(" : ")
		switch v := f.Value.(type) {
		case nil:
			b.WriteString("null")
		case string:
			writeJSONString(&b, v)
		case []string:
			b.WriteString("[ ")
			for j, s := range v {
				if j > 0 {
					b.WriteString(", ")
				}
				writeJSONString(&b, s)
			}
			b.WriteString(" ]")
		default:
			panic("metadata: unsupported JSON value")
		}
		if i < len(fields)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}")
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	b.Truncate(b.Len() - 1)
}

func ts(t time.Time) string { return t.UTC().Format(TimeFormat) }

// CredentialsJSON is the body of iam/security-credentials/ROLE.
func CredentialsJSON(accessKeyID, secretAccessKey, token string, lastUpdated, expiration time.Time) []byte {
	return PrettyJSON(
		Field{"Code", "Success"},
		Field{"LastUpdated", ts(lastUpdated)},
		Field{"Type", "AWS-HMAC"},
		Field{"AccessKeyId", accessKeyID},
		Field{"SecretAccessKey", secretAccessKey},
		Field{"Token", token},
		Field{"Expiration", ts(expiration)},
	)
}

// CredentialsErrorJSON is EC2's answer when a role's credentials cannot be had:
// HTTP 200 with a Code other than Success.
func CredentialsErrorJSON(code, message string, lastUpdated time.Time) []byte {
	return PrettyJSON(
		Field{"Code", code},
		Field{"Message", message},
		Field{"LastUpdated", ts(lastUpdated)},
	)
}

// IdentityDocument renders dynamic/instance-identity/document in the layout of
// a real instance: fixed member order, nulls for absent values.
func (in *Instance) IdentityDocument() []byte {
	return PrettyJSON(
		Field{"accountId", in.AccountID},
		Field{"architecture", in.Architecture},
		Field{"availabilityZone", in.AvailabilityZone},
		Field{"billingProducts", nil},
		Field{"devpayProductCodes", nil},
		Field{"marketplaceProductCodes", nil},
		Field{"imageId", in.AMIID},
		Field{"instanceId", in.ID},
		Field{"instanceType", in.InstanceType},
		Field{"kernelId", nil},
		Field{"pendingTime", ts(in.LaunchTime)},
		Field{"privateIp", in.LocalIPv4},
		Field{"ramdiskId", nil},
		Field{"region", in.Region},
		Field{"version", "2017-09-30"},
	)
}

// eventsJSON renders events/maintenance/scheduled or history in the layout of
// EC2's documentation, "[]" when there are none.
func eventsJSON(events []Event) []byte {
	if len(events) == 0 {
		return []byte("[]")
	}
	const eventTime = "2 Jan 2006 15:04:05 GMT"
	var parts []string
	for _, e := range events {
		notAfter := ""
		if !e.NotAfter.IsZero() {
			notAfter = e.NotAfter.UTC().Format(eventTime)
		}
		obj := PrettyJSON(
			Field{"NotBefore", e.NotBefore.UTC().Format(eventTime)},
			Field{"Code", e.Code},
			Field{"Description", e.Description},
			Field{"EventId", e.EventID},
			Field{"NotAfter", notAfter},
			Field{"State", e.State},
		)
		// Indent the object by two spaces inside the array.
		parts = append(parts, "  "+strings.ReplaceAll(string(obj), "\n", "\n  "))
	}
	return []byte("[ \n" + strings.Join(parts, ", \n") + " \n]")
}
