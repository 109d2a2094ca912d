/**
 * The `luo` command line: subcommands are registered here, each implemented in its own module.
 * Returns the process exit code (0 ok, 1 failure, 2 usage error: a short message, never the whole
 * help). Output to a closed pipe (`luo demo | head`) ends the command quietly.
 */
import { Command, CommanderError } from 'commander';
import { luoVersion } from '../version.ts';

/** A reader that went away (EPIPE) is not an error: stop quietly, as the shell's own tools do. */
function quietOnClosedPipe(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  const program = new Command('luo')
    .description('Live Update Orchestrator and Kexec HandOver on a simulated machine')
    .version(luoVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .showHelpAfterError('(luo --help, or luo <command> --help, lists what it takes)')
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (str, write) => write(`luo: ${str.replace(/^error: /, '')}`) });
  let code = 0;
  program
    .command('demo')
    .description('run the main job: a demonstration on an embedded default configuration')
    .action(async () => {
      const { runDemo } = await import('./demo.ts');
      code = await runDemo();
    });
  program
    .command('releases')
    .description('list the kernel releases luo knows: their hand-over ABIs, uAPI, limits, and which ones run')
    .option('--json', 'print them as JSON')
    .action(async (opts: { json?: boolean }) => {
      const { runReleases } = await import('./releases.ts');
      code = runReleases(opts);
    });
  program
    .command('plan')
    .description('can a live update go from release FROM to release TO? if not, which layer refuses, why, and a chain of hops that can')
    .argument('<from>', 'the running release (luo releases)')
    .argument('<to>', 'the release to update to')
    .option('--json', 'print the plan as JSON')
    .addHelpText('after', '\nExit codes: 0 the hop live-updates, 1 it does not (the output says why), 2 usage.')
    .action(async (from: string, to: string, opts: { json?: boolean }) => {
      const { runPlan } = await import('./releases.ts');
      code = runPlan(from, to, opts);
    });
  const conform = program.command('conform').description('differential testing: generated uAPI programs on a real kernel under QEMU and on luo, transcripts compared');
  conform.command('kernel').description('build a minimal bootable kernel with KHO and LUO (tinyconfig + the LUO options), reused when nothing changed')
    .option('--source <dir>', "a kernel source tree (default: fetch Debian's linux-source-7.3 with apt)")
    .option('--out <dir>', 'the build directory (default: in ~/.cache/luo/conform)')
    .option('-j, --jobs <n>', 'make -j', '2')
    .option('--json', 'print the result as JSON')
    .action(async (opts: import('./conform.ts').KernelCliOptions) => {
      const { conformKernelCli } = await import('./conform.ts');
      code = await conformKernelCli(opts);
    });
  conform.command('run').description('run generated programs (one per seed: cold boot, kexec, kexec) on the kernel in QEMU and on luo; report the divergences grouped by root cause (exit 1 on one not in --known)')
    .option('--kernel <bzImage>', 'the kernel (default: the one `luo conform kernel` built)')
    .option('--seeds <list>', 'seeds: N, FROM-TO, or a comma list', '1-10')
    .option('-j, --jobs <n>', 'seeds run at once (each runs QEMU and a luo daemon)', '1')
    .option('--release <r>', 'the luo release to compare (luo releases)')
    .option('--ops <n>', 'operations per stage', '300')
    .option('--stages <n>', 'stages (a kexec between two)', '3')
    .option('--known <file>', 'known divergences (YAML: a list of {op, kernel?, luo?, why}); they do not fail the run')
    .option('--accel <a>', 'QEMU accelerator: auto (kvm when it works here, else tcg), tcg or kvm', 'auto')
    .option('--json', 'print the report as JSON')
    .action(async (opts: import('./conform.ts').RunCliOptions) => {
      const { conformRunCli } = await import('./conform.ts');
      code = await conformRunCli(opts);
    });
  conform.command('show').description("one seed: the program's operations and both transcripts side by side").argument('<seed>')
    .option('--kernel <bzImage>', 'the kernel (default: the one `luo conform kernel` built; none: luo only)')
    .option('--ops <n>', 'operations per stage', '300')
    .option('--stages <n>', 'stages', '3')
    .option('--release <r>', 'the luo release')
    .option('--accel <a>', 'auto, tcg or kvm', 'auto')
    .option('--json', 'as JSON')
    .action(async (seed: string, opts: import('./conform.ts').ShowCliOptions) => {
      const { conformShowCli } = await import('./conform.ts');
      code = await conformShowCli(seed, opts);
    });
  const fleet = program.command('fleet').description('live updates across a fleet of hosts, coordinated through etcd');
  fleet.command('demo').description('the fleet on an embedded default: 3-member etcd, two runners, a controller and a standby, a campaign with a canary and three waves')
    .option('--hosts <n>', 'how many simulated hosts', '500').option('--json', 'print the summary as JSON')
    .option('--dashboard [port]', 'serve the fleet dashboard while it runs (and after, until Ctrl-C); port default 7374, 0 = any')
    .action(async (opts: { hosts?: string; json?: boolean; dashboard?: string | boolean }) => {
      const port = opts.dashboard === undefined || opts.dashboard === false ? undefined : opts.dashboard === true ? 7374 : /^\d+$/.test(opts.dashboard) && Number(opts.dashboard) < 65536 ? Number(opts.dashboard) : NaN;
      if (Number.isNaN(port)) {
        process.stderr.write(`luo fleet demo: --dashboard takes a port from 0 to 65535, not "${String(opts.dashboard)}"\n`);
        code = 2;
        return;
      }
      code = await (await import('./fleet-demo.ts')).runFleetDemo({ hosts: Number(opts.hosts ?? '500'), ...(opts.json ? { json: true } : {}), ...(port !== undefined ? { dashboardPort: port } : {}) });
    });
  const etcd = fleet.command('etcd').description('a local etcd for trying the fleet (1 member or a 3-member cluster on 127.0.0.1)');
  etcd.command('up').description('start it').option('--members <n>', '1 or 3', '1').option('--dir <dir>', 'data and state directory (default: $TMPDIR/luo-etcd-$UID)')
    .action(async (opts: { members?: string; dir?: string }) => {
      code = await (await import('./fleet.ts')).runEtcdUp(opts);
    });
  etcd.command('down').description('stop it').option('--dir <dir>', 'as given to up')
    .action(async (opts: { dir?: string }) => {
      code = await (await import('./fleet.ts')).runEtcdDown(opts);
    });
  etcd.command('endpoints').description('print its client URLs (for --etcd or LUO_ETCD)').option('--dir <dir>', 'as given to up')
    .action(async (opts: { dir?: string }) => {
      code = (await import('./fleet.ts')).runEtcdEndpoints(opts);
    });
  const etcdOpt = '--etcd <urls>';
  const etcdHelp = 'etcd client URLs, comma-separated (default $LUO_ETCD)';
  fleet.command('host').description('run simulated hosts: register them, keep their presence, perform the live updates they are assigned')
    .option(etcdOpt, etcdHelp).option('--count <n>', 'how many hosts', '10').option('--release <name>', 'the release they run (luo releases)', '7.3.4')
    .option('--labels <k=v,...>', 'labels of every host').option('--id <name>', 'this runner\'s id (default runner-<pid>; hosts are <id>-NNNN)')
    .option('--fail <host=kind,...>', 'make hosts fail: refused, fell-back or slow (tests and demos)')
    .option('--update-delay-ms <ms>', 'wait before each update (tests)').option('--ttl <s>', 'presence lease TTL in seconds', '3')
    .option('--socket <paths...>', 'attach to these luo serve daemons instead (one host each; an update is their kexec --release)')
    .option('--racks <n>', 'spread the hosts over n racks (label rack=r0..)')
    .action(async (opts: Record<string, string | undefined> & { socket?: string[] }) => {
      code = await (await import('./fleet.ts')).runHost(opts);
    });
  fleet.command('controller').description('the campaign controller (several may run; one leads, elected in etcd)')
    .option(etcdOpt, etcdHelp).option('--id <name>', 'its id (default controller-<pid>)')
    .action(async (opts: { etcd?: string; id?: string }) => {
      code = await (await import('./fleet.ts')).runController(opts);
    });
  fleet.command('hosts').description('the registered hosts: release, labels, state, runner').option(etcdOpt, etcdHelp).option('--json', 'as JSON')
    .action(async (opts: { etcd?: string; json?: boolean }) => {
      code = await (await import('./fleet.ts')).runHosts(opts);
    });
  const campaign = fleet.command('campaign').description('live-update campaigns');
  campaign.command('create').description('validate a campaign file, plan it against the registered hosts, and start it').argument('<file>', 'the campaign (YAML), or -')
    .option(etcdOpt, etcdHelp).option('--json', 'print the plan as JSON')
    .action(async (file: string, opts: { etcd?: string; json?: boolean }) => {
      code = await (await import('./fleet.ts')).runCampaignCreate(file, opts);
    });
  campaign.command('schema').description('print the campaign file format as JSON Schema (draft 2020-12), for editors')
    .action(async () => {
      const { campaignJsonSchema } = await import('../fleet/campaign.ts');
      process.stdout.write(`${JSON.stringify(campaignJsonSchema(), null, 2)}\n`);
    });
  campaign.command('list').description('every campaign and its phase').option(etcdOpt, etcdHelp).option('--json', 'as JSON')
    .action(async (opts: { etcd?: string; json?: boolean }) => {
      code = await (await import('./fleet.ts')).runCampaignList(opts);
    });
  campaign.command('status').description('waves, results, blackout').argument('<name>').option(etcdOpt, etcdHelp).option('--json', 'as JSON').option('--watch', 'follow it until it ends')
    .action(async (name: string, opts: { etcd?: string; json?: boolean; watch?: boolean }) => {
      code = await (await import('./fleet.ts')).runCampaignStatus(name, opts);
    });
  for (const action of ['pause', 'resume', 'abort'] as const) {
    campaign.command(action).description(`${action} a campaign (the leading controller applies it)`).argument('<name>').option(etcdOpt, etcdHelp)
      .action(async (name: string, opts: { etcd?: string }) => {
        code = await (await import('./fleet.ts')).runCampaignIntent(name, action, opts);
      });
  }
  program
    .command('dtb')
    .description('decompile a flattened device tree blob to DTS (as dtc -I dtb -O dts prints it) or JSON')
    .argument('<file>', 'the blob, or - for stdin')
    .option('--json', 'print the tree as JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      const { runDtb } = await import('./dtb.ts');
      code = await runDtb(file, opts);
    });
  program
    .command('inspect')
    .description('decode a KHO/LUO hand-over artefact (root FDT, sub-blob, luo image, ELF core dump, pages directory) and validate it')
    .argument('<file>', 'the artefact: a file, a directory of role@0xADDR.bin pages, or - for stdin')
    .option('--json', 'print the report as JSON')
    .option('--kind <kind>', 'force the input kind: fdt, elf, image, pages, raw (flat memory from 0, e.g. QEMU pmemsave) or blob')
    .option('--fdt-addr <addr>', 'physical address of the KHO root FDT (default: image metadata, else a scan)')
    .option('--memfd-contents', 'show the first bytes of each memfd folio')
    .option('--memfd-bytes <n>', 'how many bytes --memfd-contents shows (default 16)')
    .option('--extract <dir>', "write each preserved file's content (<dir>/<session>/<token>.bin) and manifest.json (token, size, pos, seals, sha256)")
    .action(async (file: string, opts: import('./inspect.ts').InspectCliOptions) => {
      const { runInspect } = await import('./inspect.ts');
      code = await runInspect(file, opts);
    });
  program
    .command('serve')
    .description("run a machine and serve its /dev/liveupdate on a unix socket (docs/protocol.md)")
    .option('--socket <path>', 'socket path (default $XDG_RUNTIME_DIR/luo/luo.sock, else /tmp/luo-$UID/luo.sock)')
    .option('--ram <size>', 'RAM size of a cold-booted machine (e.g. 4G)', '4G')
    .option('--cmdline <text>', 'kernel command line')
    .option('--state-dir <dir>', 'where kexec writes the hand-over image (luo.img)')
    .option('--from-image <path>', 'boot from a hand-over image (refused if corrupt)')
    .option('--resume', 'boot from <state-dir>/luo.img when it exists, else cold')
    .option('--takeover', 'started by a kexec: report readiness on fd 3')
    .option('--await-image', 'started by a kexec ahead of its freeze: wait on fd 3 for the image to boot')
    .option('--log <file>', 'append the console to a file instead of stdout')
    .option('--release <name>', 'the kernel release to boot (luo releases; default 7.3.4)')
    .option('--handler <paths...>', 'file handler plugin modules to build into the kernel (docs/handlers.md)')
    .option('--liveupdate-test', "CONFIG_LIVEUPDATE_TEST: the test module's three FLBs on every file handler")
    .option('--subsystem <name=data...>', 'subsystems in every kernel, each handing over a u64 at the freeze; NAME=DATA,fail=prepare|freeze:ERRNO[:TIMES] makes that callback fail')
    .action(async (opts: import('./serve.ts').ServeOptions) => {
      const { runServe } = await import('./serve.ts');
      code = await runServe(opts);
    });
  program
    .command('kexec')
    .description('live-update the daemon into a new process (optionally another luo build)')
    .option('--socket <path>', 'socket path')
    .option('--build <path>', 'another luo build: a directory with bin/luo.mjs, or the luo.mjs script')
    .option('--cmdline <text>', 'command line of the new kernel')
    .option('--release <name>', 'kexec into another kernel release (luo releases, luo plan; default: the running one)')
    .option('--keep-clients', "leave the old kernel's client processes (shim programs holding sessions) running")
    .option('--json', 'print the result as JSON')
    .action(async (opts: { socket?: string; build?: string; cmdline?: string; release?: string; keepClients?: boolean; json?: boolean }) => {
      const { runKexec } = await import('./kexec.ts');
      code = await runKexec(opts);
    });
  program
    .command('stop')
    .description('power the daemon off: its sessions end, its socket is removed')
    .option('--socket <path>', 'socket path')
    .action(async (opts: { socket?: string }) => {
      const { runStop } = await import('./stop.ts');
      code = await runStop(opts);
    });
  program
    .command('status')
    .description("show the daemon's LUO state, sessions and preserved memory")
    .option('--socket <path>', 'socket path')
    .option('--json', 'print JSON')
    .action(async (opts: { socket?: string; json?: boolean }) => {
      const { runStatus } = await import('./status.ts');
      code = await runStatus(opts);
    });
  program
    .command('scenario')
    .description('run a scripted live-update scenario (YAML) and report pass/fail per step')
    .argument('[file]', 'the scenario file, or - for stdin')
    .option('--json', 'print the results as JSON')
    .option('-v, --verbose', 'also print the kernel console and the agent log')
    .option('--schema', 'print the scenario file format')
    .option('--json-schema', 'print the format as JSON Schema (draft 2020-12), for editors')
    .action(async (file: string | undefined, opts: { json?: boolean; verbose?: boolean; schema?: boolean; jsonSchema?: boolean }) => {
      const { runScenarioCli } = await import('./scenario.ts');
      code = await runScenarioCli(file, opts);
    });
  program
    .command('dashboard')
    .description('serve a live web page of the machine (memory map, sessions, KHO tree, live-update timeline) or, with --fleet, of the fleet')
    .option('--demo', "run the demo's live updates in this process and show them")
    .option('--socket <path>', 'watch a running `luo serve` on this socket (default: the default socket)')
    .option('--fleet', 'show the fleet on etcd instead: waves, every host, blackouts, failures, the controller')
    .option('--etcd <urls>', 'with --fleet: etcd endpoints (default $LUO_ETCD)')
    .option('--port <n>', 'TCP port (0 = any free port)', '7373')
    .option('--host <addr>', 'address to bind (loopback by default)', '127.0.0.1')
    .option('--updates <n>', 'live updates the demo performs', '3')
    .option('--pace <ms>', 'pause between demo steps so they can be watched', '1500')
    .option('--interval <ms>', 'how often the daemon is polled', '500')
    .option('--exit-when-done', 'stop serving when the demo has finished')
    .option('--json', 'print the URL as JSON')
    .addHelpText('after', '\nExamples:\n  luo dashboard --demo            # watch three live updates at http://127.0.0.1:7373/\n  luo dashboard --socket /tmp/l.sock --port 0\n  luo dashboard --fleet --etcd http://127.0.0.1:2379\n\nExit codes: 0 ok (demo verified), 1 failure (no daemon, port in use, demo failed), 2 usage.')
    .action(async (opts: import('./dashboard.ts').DashboardOptions) => {
      const { runDashboard } = await import('./dashboard.ts');
      code = await runDashboard(opts);
    });
  program
    .command('debugfs')
    .description("show the daemon kernel's KHO debugfs (/sys/kernel/debug/kho): list files, or print one (device trees as DTS)")
    .argument('[path]', 'a file or directory, e.g. out/fdt, out/scratch_phys, in/sub_fdts (default: list everything)')
    .option('--socket <path>', 'socket path of `luo serve`')
    .option('--json', 'print JSON (files with sizes, or the file with its text and base64 bytes)')
    .option('--raw', 'write the file\'s bytes unchanged')
    .addHelpText('after', '\nExit codes: 0 ok, 1 no daemon / no such file / KHO off, 2 usage.')
    .action(async (path: string | undefined, opts: import('./debugfs.ts').DebugfsOptions) => {
      const { runDebugfs } = await import('./debugfs.ts');
      code = await runDebugfs(path, opts);
    });
  const session = program
    .command('session')
    .description("create, list, preserve, retrieve and finish LUO sessions of a running daemon (sessions are held by the daemon between commands)")
    .addHelpText('after', '\nA session created here is held by the daemon (protocol HOLD/TAKE), so it outlives this command:\n  luo session create vm-1\n  luo session preserve vm-1 0x100 guest.img\n  luo kexec\n  luo session retrieve vm-1 0x100 -o guest.img\n  luo session finish vm-1\n\nExit codes: 0 ok, 1 the operation failed (the message says why), 2 usage.');
  const sessOpts = (c: Command): Command => c.option('--socket <path>', 'socket path of `luo serve`').option('--json', 'print JSON');
  sessOpts(session.command('create').description('create an outgoing session (LIVEUPDATE_IOCTL_CREATE_SESSION) held by the daemon').argument('<name>', 'session name (at most 63 bytes)'))
    .action(async (name: string, opts: import('./session.ts').SessionCliOptions) => {
      code = await (await import('./session.ts')).sessionCreate(name, opts);
    });
  sessOpts(session.command('list').description('list outgoing and incoming sessions with their files, tokens and handlers'))
    .action(async (opts: import('./session.ts').SessionCliOptions) => {
      code = await (await import('./session.ts')).sessionList(opts);
    });
  sessOpts(session.command('preserve').description("preserve a file's contents in a held session as a memfd (PRESERVE_FD)").argument('<name>', 'session name').argument('<token>', 'token, e.g. 0x100').argument('<file>', 'the file whose contents become the memfd'))
    .option('--copy', 'copy the contents now (default: the daemon reads the file at kexec, so keep it)')
    .option('--pos <n>', 'file position to preserve', '0')
    .action(async (name: string, token: string, file: string, opts: import('./session.ts').SessionCliOptions & { copy?: boolean; pos?: string }) => {
      code = await (await import('./session.ts')).sessionPreserve(name, token, file, opts);
    });
  sessOpts(session.command('retrieve').description('retrieve a file handed over by the previous kernel (RETRIEVE_FD): contents to stdout or -o').argument('<name>', 'session name').argument('<token>', 'token'))
    .option('-o, --output <file>', 'write the contents to this file')
    .action(async (name: string, token: string, opts: import('./session.ts').SessionCliOptions & { output?: string }) => {
      code = await (await import('./session.ts')).sessionRetrieve(name, token, opts);
    });
  sessOpts(session.command('finish').description('finish an incoming session (LIVEUPDATE_SESSION_FINISH) and release it').argument('<name>', 'session name'))
    .action(async (name: string, opts: import('./session.ts').SessionCliOptions) => {
      code = await (await import('./session.ts')).sessionFinish(name, opts);
    });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return code;
}
