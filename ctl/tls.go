package ctl

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/conclave-lb/conclave/internal/pki"
)

// tlsCommand is `conclavectl tls`: the cluster CA and peer certificates
// for mutual TLS between peers (the work is in internal/pki).
func tlsCommand() *cobra.Command {
	tls := group("tls", "Make the cluster CA and peer certificates for mutual TLS between peers")
	ca := group("ca", "The cluster CA")
	cert := group("cert", "Peer certificates")
	tls.AddCommand(ca, cert)

	var caDir string
	var caDays int
	caCreate := &cobra.Command{
		Use:   "create [--dir D] [--days N]",
		Short: "Write a new cluster CA: D/" + pki.CAFile + " and D/" + pki.CAKeyFile,
		Long: `Write a new cluster CA (ECDSA P-256): D/` + pki.CAFile + ` is given to every peer
(--tls-ca), D/` + pki.CAKeyFile + ` signs peer certificates and stays off the peers.
Existing files are never overwritten.`,
		Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath, err := pki.WriteCA(caDir, caDays)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "==> CA certificate: %s\n==> CA key:         %s\n", certPath, keyPath)
			return err
		},
	}
	caCreate.Flags().StringVar(&caDir, "dir", ".", "directory to write the files to")
	caCreate.Flags().IntVar(&caDays, "days", pki.DefaultCADays, "validity in days")
	ca.AddCommand(caCreate)

	var certDir, name string
	var hosts []string
	var certDays int
	certCreate := &cobra.Command{
		Use:   "create --name N [--hosts H,...] [--dir D] [--days N]",
		Short: "Write a peer certificate signed by D's CA: D/N.pem and D/N-key.pem",
		Long: `Write peer N's certificate and key (ECDSA P-256), signed by the CA in D, for
both server and client authentication. --hosts (names and IP addresses the
peer is reached at) go into the certificate with N, localhost and 127.0.0.1.
Peers check that a certificate comes from the cluster CA, not its names.
Existing files are never overwritten.`,
		Args: nargs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return fmt.Errorf("--name is required (the peer's name; it names the files)")
			}
			certPath, keyPath, err := pki.WriteCert(certDir, name, hosts, certDays)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "==> certificate: %s\n==> key:         %s\n", certPath, keyPath)
			return err
		},
	}
	certCreate.Flags().StringVar(&name, "name", "", "the peer's name (certificate common name and file names)")
	certCreate.Flags().StringSliceVar(&hosts, "hosts", nil, "comma-separated host names and IP addresses of the peer")
	certCreate.Flags().StringVar(&certDir, "dir", ".", "directory holding the CA; the files are written there")
	certCreate.Flags().IntVar(&certDays, "days", pki.DefaultCertDays, "validity in days")
	cert.AddCommand(certCreate)
	return tls
}
