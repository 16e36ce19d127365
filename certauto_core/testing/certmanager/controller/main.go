// Command certauto-cert-manager-controller runs cert-manager's own controllers,
// unmodified, for CertAuto's tests: the Certificate controllers (trigger, key
// manager, request manager, issuing, readiness, revision manager), the
// CertificateRequest approver, the SelfSigned and CA signers, and the Issuer and
// ClusterIssuer controllers that mark issuers Ready.
//
// Since v1.12 cert-manager's controller main lives in a separate Go module
// (github.com/cert-manager/cert-manager/cmd/controller) that the Go module proxy
// does not serve. Its controller packages are in the main module, which the
// proxy does serve; they register themselves with pkg/controller in their init
// functions, so importing them and running controller.Known() is the same
// wiring cmd/controller/app does, minus leader election, webhooks, ACME, Vault
// and Venafi. The build (python -m certauto_core.testing.certmanager build)
// writes a go.mod with the pinned cert-manager version next to this file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// Ready is printed once every controller runs and the informers are started.
const Ready = "certauto-cert-manager-controller: controllers started"

func main() {
	kubeconfig := flag.String("kubeconfig", "", "path to the kubeconfig to act with")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace of the Secrets that ClusterIssuers refer to")
	workers := flag.Int("workers", 2, "workers per controller")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubeconfig, *clusterResourceNamespace, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "certauto-cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string, workers int) error {
	opts := controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   100,
		KubernetesAPIBurst: 200,
	}
	opts.ClusterResourceNamespace = clusterResourceNamespace
	// cert-manager's own defaults (internal/apis/config/controller/v1alpha1). The
	// backoff matters most: left at zero, a failing request is retried in a hot loop.
	opts.CertificateRequestMinimumBackoffDuration = time.Hour
	opts.CertificateRequestMaximumBackoffDuration = 32 * time.Hour
	opts.CopiedAnnotationPrefixes = []string{
		"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/",
	}
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		return err
	}

	known := controllerpkg.Known()
	names := make([]string, 0, len(known))
	for name := range known {
		names = append(names, name)
	}
	sort.Strings(names)

	var wg sync.WaitGroup
	for _, name := range names {
		controller, err := known[name](factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := controller.Run(workers, ctx); err != nil {
				fmt.Fprintf(os.Stderr, "controller %s stopped: %v\n", name, err)
			}
		}()
	}

	// Every Context built by the factory shares these informer factories; they
	// start after all controllers registered their informers, as in cmd/controller.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	fmt.Fprintf(os.Stderr, "%s: %v\n", Ready, names)

	<-ctx.Done()
	wg.Wait()
	return nil
}
