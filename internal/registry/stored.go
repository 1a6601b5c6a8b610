package registry

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/metadata"
)

// InstanceSchema is the schema version of the instance records this code
// writes under instances/<id>. Records written before records had a version
// have none and are read as version 1, whose layout they have.
//
// The stored record has types of its own (instanceV1 and the types it
// holds), apart from config.Instance and the in-memory Instance, so that a
// key of the configuration file or a field of Instance can change without
// rewriting the records in the store: a new layout gets a new version and
// its own types, and the versions already stored are read with theirs.
const InstanceSchema = 1

// SchemaError: a record has a schema version this code does not know,
// written by a newer imds. The record is left as it is.
type SchemaError struct {
	Key     string
	Version int
	// Known is the newest version this code reads.
	Known int
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s: record schema version %d is not one this imds reads (up to %d); it was written by a newer imds, and is left as it is", e.Key, e.Version, e.Known)
}

// encodeInstance is the stored form of in, at InstanceSchema.
func encodeInstance(in *Instance) ([]byte, error) {
	return json.Marshal(instanceToV1(in))
}

// decodeInstance reads the record stored under key, of any version this code
// knows.
func decodeInstance(key string, data []byte) (*Instance, error) {
	var head struct {
		Schema *int `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	version := 1
	if head.Schema != nil {
		version = *head.Schema
	}
	switch version {
	case 1:
		var rec instanceV1
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		return rec.instance(), nil
	}
	return nil, &SchemaError{Key: key, Version: version, Known: InstanceSchema}
}

// instanceV1 is version 1 of the instance record. Its JSON keys are those
// the record had before it had a version; they must not change.
type instanceV1 struct {
	Schema      int       `json:"schema"`
	Spec        specV1    `json:"spec"`
	Options     optionsV1 `json:"options"`
	LaunchTime  time.Time `json:"launch-time"`
	SeedHash    string    `json:"seed-hash,omitempty"`
	State       string    `json:"state,omitempty"`
	StateUntil  time.Time `json:"state-until,omitzero"`
	StateReason string    `json:"state-reason,omitempty"`
}

// optionsV1 are the resolved options of an instanceV1.
type optionsV1 struct {
	HTTPTokens              imdsopt.Tokens   `json:"http-tokens"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `json:"http-put-response-hop-limit"`
	HTTPEndpoint            imdsopt.State    `json:"http-endpoint"`
	HTTPProtocolIPv6        imdsopt.State    `json:"http-protocol-ipv6"`
	InstanceMetadataTags    imdsopt.State    `json:"instance-metadata-tags"`
}

// specV1 is the operator's spec in an instanceV1: the keys the
// configuration file had when version 1 was defined.
type specV1 struct {
	InstanceID           string            `json:"instance-id,omitempty"`
	Addresses            []string          `json:"addresses,omitempty"`
	AccountID            string            `json:"account-id,omitempty"`
	AMIID                string            `json:"ami-id,omitempty"`
	AMILaunchIndex       int               `json:"ami-launch-index,omitempty"`
	InstanceType         string            `json:"instance-type,omitempty"`
	Architecture         string            `json:"architecture,omitempty"`
	AvailabilityZone     string            `json:"availability-zone,omitempty"`
	AvailabilityZoneID   string            `json:"availability-zone-id,omitempty"`
	Region               string            `json:"region,omitempty"`
	LocalIPv4            string            `json:"local-ipv4,omitempty"`
	PublicIPv4           string            `json:"public-ipv4,omitempty"`
	IPv6                 string            `json:"ipv6,omitempty"`
	MAC                  string            `json:"mac,omitempty"`
	Hostname             string            `json:"hostname,omitempty"`
	PublicHostname       string            `json:"public-hostname,omitempty"`
	ReservationID        string            `json:"reservation-id,omitempty"`
	InterfaceID          string            `json:"interface-id,omitempty"`
	SubnetID             string            `json:"subnet-id,omitempty"`
	SubnetCIDR           string            `json:"subnet-ipv4-cidr-block,omitempty"`
	VPCID                string            `json:"vpc-id,omitempty"`
	VPCCIDR              string            `json:"vpc-ipv4-cidr-block,omitempty"`
	SecurityGroups       []string          `json:"security-groups,omitempty"`
	SecurityGroupIDs     []string          `json:"security-group-ids,omitempty"`
	PublicKeys           config.OrderedMap `json:"public-keys,omitempty"`
	UserData             *string           `json:"user-data,omitempty"`
	UserDataBase64       string            `json:"user-data-base64,omitempty"`
	Tags                 config.OrderedMap `json:"tags,omitempty"`
	IAMRole              string            `json:"iam-role,omitempty"`
	InstanceProfile      string            `json:"instance-profile,omitempty"`
	LifeCycle            string            `json:"instance-life-cycle,omitempty"`
	LaunchTime           string            `json:"launch-time,omitempty"`
	Spot                 *spotV1           `json:"spot,omitempty"`
	Rebalance            string            `json:"rebalance-notice-time,omitempty"`
	Events               []maintenanceV1   `json:"maintenance-events,omitempty"`
	TargetLifecycleState string            `json:"target-lifecycle-state,omitempty"`
	MetadataOptions      metadataOptionsV1 `json:"metadata-options"`
}

type spotV1 struct {
	Action string `json:"action,omitempty"`
	Time   string `json:"time,omitempty"`
}

type maintenanceV1 struct {
	Code              string `json:"code,omitempty"`
	Description       string `json:"description,omitempty"`
	EventID           string `json:"event-id,omitempty"`
	NotBefore         string `json:"not-before,omitempty"`
	NotAfter          string `json:"not-after,omitempty"`
	NotBeforeDeadline string `json:"not-before-deadline,omitempty"`
	State             string `json:"state,omitempty"`
}

type metadataOptionsV1 struct {
	HTTPTokens              imdsopt.Tokens   `json:"http-tokens,omitempty"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `json:"http-put-response-hop-limit,omitempty"`
	HTTPEndpoint            imdsopt.State    `json:"http-endpoint,omitempty"`
	HTTPProtocolIPv6        imdsopt.State    `json:"http-protocol-ipv6,omitempty"`
	InstanceMetadataTags    imdsopt.State    `json:"instance-metadata-tags,omitempty"`
}

func instanceToV1(in *Instance) instanceV1 {
	s := &in.Spec
	rec := instanceV1{
		Schema: 1,
		Spec: specV1{
			InstanceID:           s.InstanceID,
			Addresses:            s.Addresses,
			AccountID:            s.AccountID,
			AMIID:                s.AMIID,
			AMILaunchIndex:       s.AMILaunchIndex,
			InstanceType:         s.InstanceType,
			Architecture:         s.Architecture,
			AvailabilityZone:     s.AvailabilityZone,
			AvailabilityZoneID:   s.AvailabilityZoneID,
			Region:               s.Region,
			LocalIPv4:            s.LocalIPv4,
			PublicIPv4:           s.PublicIPv4,
			IPv6:                 s.IPv6,
			MAC:                  s.MAC,
			Hostname:             s.Hostname,
			PublicHostname:       s.PublicHostname,
			ReservationID:        s.ReservationID,
			InterfaceID:          s.InterfaceID,
			SubnetID:             s.SubnetID,
			SubnetCIDR:           s.SubnetCIDR,
			VPCID:                s.VPCID,
			VPCCIDR:              s.VPCCIDR,
			SecurityGroups:       s.SecurityGroups,
			SecurityGroupIDs:     s.SecurityGroupIDs,
			PublicKeys:           s.PublicKeys,
			UserData:             s.UserData,
			UserDataBase64:       s.UserDataBase64,
			Tags:                 s.Tags,
			IAMRole:              s.IAMRole,
			InstanceProfile:      s.InstanceProfile,
			LifeCycle:            s.LifeCycle,
			LaunchTime:           s.LaunchTime,
			Rebalance:            s.Rebalance,
			TargetLifecycleState: s.TargetLifecycleState,
			MetadataOptions:      metadataOptionsV1(s.MetadataOptions),
		},
		Options:     optionsV1(in.Options),
		LaunchTime:  in.LaunchTime,
		SeedHash:    in.SeedHash,
		State:       string(in.State),
		StateUntil:  in.StateUntil,
		StateReason: in.StateReason,
	}
	if s.Spot != nil {
		rec.Spec.Spot = new(spotV1(*s.Spot))
	}
	for _, e := range s.Events {
		rec.Spec.Events = append(rec.Spec.Events, maintenanceV1(e))
	}
	return rec
}

func (rec *instanceV1) instance() *Instance {
	s := &rec.Spec
	in := &Instance{
		Spec: config.Instance{
			InstanceID:           s.InstanceID,
			Addresses:            s.Addresses,
			AccountID:            s.AccountID,
			AMIID:                s.AMIID,
			AMILaunchIndex:       s.AMILaunchIndex,
			InstanceType:         s.InstanceType,
			Architecture:         s.Architecture,
			AvailabilityZone:     s.AvailabilityZone,
			AvailabilityZoneID:   s.AvailabilityZoneID,
			Region:               s.Region,
			LocalIPv4:            s.LocalIPv4,
			PublicIPv4:           s.PublicIPv4,
			IPv6:                 s.IPv6,
			MAC:                  s.MAC,
			Hostname:             s.Hostname,
			PublicHostname:       s.PublicHostname,
			ReservationID:        s.ReservationID,
			InterfaceID:          s.InterfaceID,
			SubnetID:             s.SubnetID,
			SubnetCIDR:           s.SubnetCIDR,
			VPCID:                s.VPCID,
			VPCCIDR:              s.VPCCIDR,
			SecurityGroups:       s.SecurityGroups,
			SecurityGroupIDs:     s.SecurityGroupIDs,
			PublicKeys:           s.PublicKeys,
			UserData:             s.UserData,
			UserDataBase64:       s.UserDataBase64,
			Tags:                 s.Tags,
			IAMRole:              s.IAMRole,
			InstanceProfile:      s.InstanceProfile,
			LifeCycle:            s.LifeCycle,
			LaunchTime:           s.LaunchTime,
			Rebalance:            s.Rebalance,
			TargetLifecycleState: s.TargetLifecycleState,
			MetadataOptions:      config.MetadataOptions(s.MetadataOptions),
		},
		Options:     Options(rec.Options),
		LaunchTime:  rec.LaunchTime,
		SeedHash:    rec.SeedHash,
		State:       metadata.State(rec.State),
		StateUntil:  rec.StateUntil,
		StateReason: rec.StateReason,
	}
	if s.Spot != nil {
		in.Spec.Spot = new(config.SpotAction(*s.Spot))
	}
	for _, e := range s.Events {
		in.Spec.Events = append(in.Spec.Events, config.MaintenanceEvent(e))
	}
	return in
}
