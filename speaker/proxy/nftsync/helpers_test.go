package nftsync

import "os/exec"

// runNft runs one nft command in the calling thread's namespace.
func runNft(cmd string) (string, error) {
	out, err := exec.Command("nft", cmd).CombinedOutput()
	return string(out), err
}
