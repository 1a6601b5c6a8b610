package imdsclient

import "testing"

func TestResolveEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		flag    string
		ipv6    bool
		env     map[string]string
		want    Endpoint
		wantErr bool
	}{
		{name: "default", want: Endpoint{IPv4Endpoint, "default"}},
		{name: "mode IPv4", env: map[string]string{EnvEndpointMode: "ipv4"}, want: Endpoint{IPv4Endpoint, "default"}},
		{name: "mode IPv6 any case", env: map[string]string{EnvEndpointMode: "ipv6"},
			want: Endpoint{IPv6Endpoint, EnvEndpointMode + "=ipv6"}},
		{name: "flag ipv6", ipv6: true, want: Endpoint{IPv6Endpoint, "--ipv6"}},
		{name: "env endpoint beats mode", env: map[string]string{EnvEndpoint: "http://127.0.0.1:1338/", EnvEndpointMode: "IPv6"},
			want: Endpoint{"http://127.0.0.1:1338", EnvEndpoint}},
		{name: "flag beats env", flag: "http://10.0.0.1", env: map[string]string{EnvEndpoint: "http://127.0.0.1:1338"},
			want: Endpoint{"http://10.0.0.1", "--endpoint"}},
		{name: "bad mode", env: map[string]string{EnvEndpointMode: "dual"}, wantErr: true},
		{name: "bad env endpoint", env: map[string]string{EnvEndpoint: "169.254.169.254"}, wantErr: true},
		{name: "bad flag", flag: "127.0.0.1:1338", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveEndpoint(tt.flag, tt.ipv6, func(k string) string { return tt.env[k] })
			if tt.wantErr {
				if err == nil {
					t.Errorf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
