package metadata

import "fmt"

// State is an instance state as EC2 names it in DescribeInstances.
type State string

// EC2's instance states. The empty State is Running: records written before
// instances had a state are running ones.
const (
	Pending      State = "pending"
	Running      State = "running"
	ShuttingDown State = "shutting-down"
	Terminated   State = "terminated"
	Stopping     State = "stopping"
	Stopped      State = "stopped"
)

// Name is the state's EC2 name ("running" for the empty State).
func (s State) Name() string {
	if s == "" {
		return string(Running)
	}
	return string(s)
}

// Code is EC2's numeric code of the state (the low byte of InstanceState.Code).
func (s State) Code() int {
	switch s {
	case Pending:
		return 0
	case ShuttingDown:
		return 32
	case Terminated:
		return 48
	case Stopping:
		return 64
	case Stopped:
		return 80
	}
	return 16
}

// Gone reports whether no code runs on an instance in this state, so that
// nothing on it can reach the metadata service.
func (s State) Gone() bool { return s == Stopped || s == Terminated }

// Validate checks that s is one of EC2's states.
func (s State) Validate() error {
	switch s {
	case "", Pending, Running, ShuttingDown, Terminated, Stopping, Stopped:
		return nil
	}
	return fmt.Errorf("instance state %q: want pending, running, shutting-down, terminated, stopping or stopped", string(s))
}
