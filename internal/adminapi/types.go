package adminapi

import (
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
)

// The JSON bodies of the admin API, shared with its client. Keys use the
// configuration file's kebab-case spelling.

// InstanceSummary is one entry of GET /v1/instances.
type InstanceSummary struct {
	InstanceID string           `json:"instance-id"`
	Addresses  []string         `json:"addresses"`
	Options    registry.Options `json:"options"`
	State      string           `json:"state"`
	Revision   int64            `json:"revision"`
}

// InstanceList is the answer of GET /v1/instances, sorted by id.
type InstanceList struct {
	Instances []InstanceSummary `json:"instances"`
}

// InstanceRecord is an instance as GET, PUT and the events endpoints return it.
type InstanceRecord struct {
	// Spec is what the operator gave, in the configuration file's format.
	Spec config.Instance `json:"spec"`
	// Options are the metadata options resolved at registration, changed since
	// by ModifyInstanceMetadataOptions or the spec.
	Options    registry.Options `json:"options"`
	LaunchTime time.Time        `json:"launch-time"`
	// FromConfig is set on instances registered from the configuration file.
	// Changes made through the API survive a restart until the file's entry
	// for the instance changes.
	FromConfig bool `json:"from-config,omitempty"`
	// State is the instance's EC2 state (running, stopping, stopped,
	// shutting-down, terminated, pending).
	State    string `json:"state"`
	Revision int64  `json:"revision"`
}

// InstanceBatch is the body of PUT /v1/instances: instances to register or
// whose specs to replace, all or none.
type InstanceBatch struct {
	Instances []config.Instance `json:"instances" yaml:"instances"`
}

// InstanceWritten is one instance of the answer to PUT /v1/instances.
type InstanceWritten struct {
	InstanceRecord
	Created bool `json:"created"`
}

// InstanceBatchResult is the answer of PUT /v1/instances, in the order the
// instances were written.
type InstanceBatchResult struct {
	Instances []InstanceWritten `json:"instances"`
}

// RoleRecord is a role as GET /v1/roles and /v1/roles/{name} return it: its
// source in the configuration file's format, with secret keys left out.
type RoleRecord struct {
	Name string `json:"name"`
	// Source is static, assume-role or process.
	Source   string         `json:"source"`
	Role     map[string]any `json:"role"`
	Revision int64          `json:"revision"`
}

// RoleList is the answer of GET /v1/roles, sorted by name.
type RoleList struct {
	Roles []RoleRecord `json:"roles"`
}

// RelayPut is the body of PUT /v1/relays/{name}. An empty secret makes the
// server generate one, returned once in the answer.
type RelayPut struct {
	Addresses []string `json:"addresses"`
	// Secret is at least 16 bytes, base64 in JSON.
	Secret []byte `json:"secret,omitempty"`
}

// RelayRecord is a relay. Secret is set only in the answer to a PUT that
// generated it.
type RelayRecord struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Secret    []byte   `json:"secret,omitempty"`
}

// RelayList is the answer of GET /v1/relays, sorted by name.
type RelayList struct {
	Relays []RelayRecord `json:"relays"`
}

// TokenKeyInfo describes a token signing key without its secret.
type TokenKeyInfo struct {
	ID      uint16    `json:"id"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// TokenKeys is the answer of POST /v1/keys/token/rotate: the key that signs
// new tokens, and every key still accepted.
type TokenKeys struct {
	Signing uint16         `json:"signing"`
	Keys    []TokenKeyInfo `json:"keys"`
}

// OperatorKey is an operator access key. SecretAccessKey is set only in the
// answer to POST /v1/keys/operator, which made it: it is never shown again.
type OperatorKey struct {
	AccessKeyID     string    `json:"access-key-id"`
	SecretAccessKey string    `json:"secret-access-key,omitempty"`
	Created         time.Time `json:"created,omitzero"`
}

// OperatorKeyList is the answer of GET /v1/keys/operator, sorted by id.
type OperatorKeyList struct {
	Keys []OperatorKey `json:"keys"`
}

// Event types of POST /v1/instances/{id}/events.
const (
	EventSpot        = "spot"
	EventRebalance   = "rebalance"
	EventMaintenance = "maintenance"
	// EventLifecycle sets autoscaling/target-lifecycle-state.
	EventLifecycle = "lifecycle"
)

// EventRequest is the body of POST /v1/instances/{id}/events: an interruption
// or maintenance notice served in the instance's metadata from then on.
type EventRequest struct {
	// Type is spot, rebalance or maintenance.
	Type string `json:"type"`
	// Action of a Spot interruption: terminate (default), stop or hibernate.
	Action string `json:"action,omitempty"`
	// Code of a maintenance event: system-reboot (default), instance-reboot,
	// system-maintenance, instance-retirement or instance-stop.
	Code        string `json:"code,omitempty"`
	Description string `json:"description,omitempty"`
	// When the event happens: Time (RFC 3339), else now plus In (a Go
	// duration such as 2m). In defaults to 2m for a Spot interruption, as
	// EC2's two-minute warning, and to 0 otherwise.
	Time string `json:"time,omitempty"`
	In   string `json:"in,omitempty"`
	// Duration is the length of a maintenance window; default 2h.
	Duration string `json:"duration,omitempty"`
	// LifecycleState of a lifecycle event: InService, Standby, Detached,
	// Terminated, Warmed:Stopped, Warmed:Running, Warmed:Hibernated or
	// Warmed:Terminated. It applies at once (Time and In do not apply).
	LifecycleState string `json:"lifecycle-state,omitempty"`
}

// Filter selects instances as an EC2 DescribeInstances filter does: Name is
// tag:KEY, instance-type, availability-zone, instance-id, ... and an instance
// matches when it has one of Values (EC2's * and ? wildcards allowed).
type Filter struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

// FleetEventRequest is the body of POST /v1/events: one event injected into
// every running instance that matches all Filters (every running instance
// when there are none), or into a Fraction of them.
type FleetEventRequest struct {
	Filters []Filter `json:"filters,omitempty"`
	// Fraction of the matching instances to choose, in (0, 1]; 0 means all.
	// At least one is chosen when any match.
	Fraction float64 `json:"fraction,omitempty"`
	// Seed makes the choice of a fraction: the same seed and fleet choose the
	// same instances, and an instance added later does not change whether
	// the others are chosen.
	Seed  int64        `json:"seed,omitempty"`
	Event EventRequest `json:"event"`
}

// FleetEventResult is the answer of POST /v1/events.
type FleetEventResult struct {
	// Matched is how many running instances matched the filters.
	Matched int `json:"matched"`
	// Instances are the ids the event was injected into, sorted.
	Instances []string `json:"instances"`
	// EventIDs are the ids of the maintenance events added, by instance.
	EventIDs map[string]string `json:"event-ids,omitempty"`
}

// RescheduleRequest is the body of POST
// /v1/instances/{id}/events/{event}/reschedule: the event's new start, RFC
// 3339, checked as ModifyInstanceEventStartTime checks it.
type RescheduleRequest struct {
	NotBefore string `json:"not-before"`
}

// State actions of POST /v1/instances/{id}/state.
const (
	StateStop      = "stop"
	StateStart     = "start"
	StateTerminate = "terminate"
)

// StateRequest is the body of POST /v1/instances/{id}/state: what
// StopInstances, StartInstances or TerminateInstances would do.
type StateRequest struct {
	Action string `json:"action"`
}

// StateChange is the answer of POST /v1/instances/{id}/state.
type StateChange struct {
	InstanceID string `json:"instance-id"`
	Previous   string `json:"previous"`
	Current    string `json:"current"`
}

// ErrorBody is every error answer of the admin API.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the code and message of an error answer.
type ErrorDetail struct {
	// Code is NotFound, InvalidParameter, Conflict, PreconditionFailed,
	// MethodNotAllowed, RequestEntityTooLarge, UnsupportedMediaType,
	// ServiceUnavailable or InternalError; authentication answers with
	// EC2's codes (AuthFailure, MissingAuthenticationToken, RequestExpired).
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes of ErrorDetail.
const (
	CodeNotFound             = "NotFound"
	CodeInvalidParameter     = "InvalidParameter"
	CodeConflict             = "Conflict"
	CodePreconditionFailed   = "PreconditionFailed"
	CodeMethodNotAllowed     = "MethodNotAllowed"
	CodeRequestTooLarge      = "RequestEntityTooLarge"
	CodeUnsupportedMediaType = "UnsupportedMediaType"
	CodeServiceUnavailable   = "ServiceUnavailable"
	CodeInternalError        = "InternalError"
)

// UILogin is the answer of POST /v1/ui/login: the path (with its query) of
// a one-time login, relative to the control plane's URL.
type UILogin struct {
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}
