package guest

// The harness and the VM's init agree on what follows: a configuration
// file in the root image, and the lines init prints on the console.

// ConfigPath is where the harness puts the run's configuration, as JSON.
const ConfigPath = "/etc/dualstack-vm.json"

// Config is what one boot does.
type Config struct {
	// Sysctls are set, in order, before the first run.
	Sysctls []Sysctl `json:"sysctls,omitempty"`
	// Env is added to every run's environment.
	Env []string `json:"env,omitempty"`
	// Runs are the test binaries, run one after another.
	Runs []Run `json:"runs"`
}

// Sysctl is one integer setting, such as {"net.inet6.ip6.v6only", 0}.
type Sysctl struct {
	Name  string `json:"name"`
	Value int    `json:"value"`
}

// Run is one test binary.
type Run struct {
	Name   string   `json:"name"`   // for the console, usually the package path
	Binary string   `json:"binary"` // absolute path in the image
	Dir    string   `json:"dir"`    // working directory: the package's sources
	Args   []string `json:"args,omitempty"`
}

// StartLine starts the console line that init prints before each run: the
// run's name and its number, from 1.
const StartLine = "dualstack-vm: run"

// RunLine starts the console line that init prints after each run:
// RunLine, the run's name and its exit status.
const RunLine = "dualstack-vm: exit"

// DoneLine starts the last line init prints, with the overall status,
// before it powers off.
const DoneLine = "dualstack-vm: done"
