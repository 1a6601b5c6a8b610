package doctor

import (
	"bufio"
	"bytes"
	"path/filepath"
	"strings"
)

// profile is one profile of the shared config and credentials files, merged.
type profile struct {
	name     string
	explicit string            // the variable that named it, "" for default
	found    bool              // present in either file
	keys     map[string]string // key -> value
	where    map[string]string // key -> the file it came from
}

func (p *profile) get(k string) string { return p.keys[k] }

// profile reads the profile the SDKs select: AWS_PROFILE, else
// AWS_DEFAULT_PROFILE, else "default".
func (r *run) profile() *profile {
	p := &profile{name: "default", keys: map[string]string{}, where: map[string]string{}}
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		if v := r.o.getenv(k); v != "" {
			p.name, p.explicit = v, k
			break
		}
	}
	home := r.o.getenv("HOME")
	file := func(env, name string) string {
		if v := r.o.getenv(env); v != "" {
			return v
		}
		if home == "" {
			return ""
		}
		return filepath.Join(home, ".aws", name)
	}
	// The credentials file names sections [NAME]; the config file names
	// them [profile NAME], except [default].
	credsFile := file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
	configFile := file("AWS_CONFIG_FILE", "config")
	configSection := "profile " + p.name
	if p.name == "default" {
		configSection = "default"
	}
	for _, f := range []struct{ path, section string }{{configFile, configSection}, {credsFile, p.name}} {
		if f.path == "" {
			continue
		}
		data, err := r.o.ReadFile(f.path)
		if err != nil {
			continue
		}
		if keys, ok := iniSection(data, f.section); ok {
			p.found = true
			for k, v := range keys {
				p.keys[k], p.where[k] = v, f.path
			}
		}
	}
	return p
}

// iniSection returns the keys of [section] in an AWS shared config file.
func iniSection(data []byte, section string) (map[string]string, bool) {
	keys := map[string]string{}
	found, in := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && strings.HasSuffix(line, "]") {
			name := strings.Join(strings.Fields(line[1:len(line)-1]), " ")
			in = name == section
			found = found || in
			continue
		}
		if !in {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return keys, found
}

// checkCredentialChain finds what comes before IMDS in the SDKs' default
// credential chains (environment, web identity, shared profile, container
// credentials) and would shadow the instance role.
func (r *run) checkCredentialChain() Check {
	c := Check{ID: "env-credentials"}
	var warns, fixes []string
	if r.o.getenv("AWS_ACCESS_KEY_ID") != "" {
		warns = append(warns, "AWS_ACCESS_KEY_ID is set: SDKs use these static keys")
		fixes = append(fixes, "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN")
	}
	if r.o.getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "" && r.o.getenv("AWS_ROLE_ARN") != "" {
		warns = append(warns, "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN are set: SDKs assume "+r.o.getenv("AWS_ROLE_ARN")+" with web identity (IAM roles for service accounts)")
		fixes = append(fixes, "unset AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN")
	}
	for _, k := range []string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"} {
		if r.o.getenv(k) != "" {
			warns = append(warns, k+" is set: SDKs use container credentials (an ECS task role or EKS Pod Identity)")
			fixes = append(fixes, "unset "+k)
			break
		}
	}
	p := r.profile()
	if p.explicit != "" && !p.found {
		c.Status = Fail
		c.Message = p.explicit + "=" + p.name + " names no profile in the shared config or credentials file: SDKs fail before they reach IMDS (the Go SDK at config load, botocore with ProfileNotFound)"
		c.Fix = "unset " + p.explicit + ", or create the profile"
		return c
	}
	switch {
	case p.get("aws_access_key_id") != "":
		warns = append(warns, "profile "+p.name+" has static keys (aws_access_key_id in "+p.where["aws_access_key_id"]+"): SDKs use them")
		fixes = append(fixes, "remove the keys from profile "+p.name+" in "+p.where["aws_access_key_id"])
	case p.get("role_arn") != "" && strings.EqualFold(p.get("credential_source"), "Ec2InstanceMetadata"):
		// Assumes a role with the instance role's credentials: IMDS is used.
	default:
		for _, k := range []string{"credential_process", "sso_session", "sso_start_url", "web_identity_token_file", "role_arn"} {
			if v := p.get(k); v != "" {
				warns = append(warns, "profile "+p.name+" sets "+k+" (in "+p.where[k]+"): SDKs get credentials from it")
				fixes = append(fixes, "remove "+k+" from profile "+p.name+", or select another profile")
				break
			}
		}
	}
	role := "the instance role"
	if r.inst.role != "" {
		role = "the instance role " + r.inst.role
	}
	if len(warns) > 0 {
		c.Status = Warn
		c.Message = strings.Join(warns, "; ") + ", not " + role + " (fine if meant)"
		c.Fix = strings.Join(fixes, "; ")
		return c
	}
	c.Status = Pass
	c.Message = "nothing ahead of " + role + " in the SDKs' credential chain"
	if p.explicit != "" {
		c.Message += " (" + p.explicit + "=" + p.name + ")"
	}
	return c
}
