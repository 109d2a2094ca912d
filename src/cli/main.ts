/**
 * The `luo` command line: subcommands are registered here, each implemented in its own module.
 * Returns the process exit code (0 ok, 1 failure, 2 usage error).
 */
import { Command, CommanderError } from 'commander';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('luo')
    .description('Live Update Orchestrator and Kexec HandOver on a simulated machine')
    .exitOverride()
    .showHelpAfterError();
  let code = 0;
  program
    .command('demo')
    .description('run the main job: a demonstration on an embedded default configuration')
    .action(async () => {
      const { runDemo } = await import('./demo.ts');
      code = await runDemo();
    });
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
    .argument('<file>', 'the artefact: a file or a directory of role@0xADDR.bin pages')
    .option('--json', 'print the report as JSON')
    .option('--kind <kind>', 'force the input kind: fdt, elf, image, pages or blob')
    .option('--fdt-addr <addr>', 'physical address of the KHO root FDT (default: image metadata, else a scan)')
    .option('--memfd-contents [bytes]', 'show the first bytes of each memfd folio (default 16)')
    .action(async (file: string, opts: { json?: boolean; kind?: string; fdtAddr?: string; memfdContents?: string | boolean }) => {
      const { runInspect } = await import('./inspect.ts');
      code = await runInspect(file, opts);
    });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return code;
}
