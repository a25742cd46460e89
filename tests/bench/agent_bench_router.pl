#!/usr/bin/env perl
# agent_bench_router.pl: the HAProxy side of tests/bench/agent_bench.sh. It
# watches one backend's servers through HAProxy's runtime API (one interactive
# session on STATE/haproxy/admin.sock, `show servers state BACKEND` every
# --interval-ms) and notes the moment their addresses, states or weights change.
#
#   watch --socket S --backend B --out FILE --stop-file F [--interval-ms MS]
#       polls until F exists; FILE gets one line per change:
#         change <epoch s> <previous sample, epoch s> <share a> <share b> <servers>
#       and a last line `samples <n> <seconds> <mean gap ms> <max gap ms>`.
#   saves --socket S --backend B --template T --target FILE --aside FILE --from P
#         --to Q --out FILE --changes FILE [--interval-ms MS] [--gap-ms MS] [--timeout-s S]
#       for each percent from P to Q: writes T with @PERCENT@ replaced to the aside
#       file (outside the source dir, same file system), renames it over FILE (an
#       atomic save, as editors and git do), and
#       polls until the canary side's share of the split backend is that percent;
#       then waits --gap-ms, still polling. --out gets one line per save:
#         save <percent> <save, epoch s> <first change, epoch s> <matching change, epoch s>
#       (`-` when none came within --timeout-s); --changes gets every change, as
#       with watch. The canary side is the one with the smaller share at the start.
#       With --state STATE_JSON, after each save the traffic steps the agent
#       decided (see history) are added to --decisions FILE.
#   history --state STATE_JSON --decisions FILE
#       adds to FILE the traffic steps in the services' histories of the agent's
#       state.json: `<N> <time_ms>` for each `traffic_shifted` event, `canary
#       traffic N%`, time_ms being the agent's clock when it decided the step
#       (the history keeps 20 events: read it after every few steps).
#   match --decisions FILE --changes FILE [--log AGENT_LOG] [--since EPOCH] [--service NAME]
#       for each decision of FILE (since EPOCH): the first change seen at or
#       after it, and the first one whose split is N% for one side; and whether
#       the agent's JSON log has its `svc: PHASE (traffic_shifted: canary
#       traffic N%)` line (at the same ms, give or take 5); prints
#         decision <N> <decided, epoch s> <first change> <matching change> <logged 0|1>
#
# A server's share counts its weight when HAProxy runs it (srv_op_state 2) and
# it is neither in maintenance nor draining (admin flags other than the
# configuration's CMAINT bit, which stays set on servers rolld enables at run time).
use strict;
use warnings;
use IO::Socket::UNIX;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use Getopt::Long;

my $mode = shift @ARGV // '';
my %o = ('interval-ms' => 1, 'gap-ms' => 300, 'timeout-s' => 10, since => 0, service => 'svc');
GetOptions(\%o, 'socket=s', 'backend=s', 'out=s', 'stop-file=s', 'interval-ms=f', 'template=s',
    'target=s', 'aside=s', 'from=i', 'to=i', 'changes=s', 'gap-ms=i', 'timeout-s=f', 'log=s', 'since=f',
    'service=s', 'state=s', 'decisions=s')
    or die "agent_bench_router.pl: bad options\n";

# ---- the runtime API, one interactive session ----

my $sock;

sub connect_cli {
    my $deadline = time + 10;
    while (time < $deadline) {
        $sock = IO::Socket::UNIX->new(Peer => $o{socket});
        if ($sock) {
            $sock->autoflush(1);
            print $sock "prompt\n";
            my $greeting = read_answer();
            return 1 if defined $greeting;
        }
        sleep 0.05;
    }
    die "agent_bench_router.pl: cannot talk to $o{socket}\n";
}

# reads up to the prompt ("\n> "); undef when the session ended
sub read_answer {
    my $answer = '';
    while ($answer !~ /(?:^|\n)> \z/) {
        my $chunk;
        my $n = sysread($sock, $chunk, 65536);
        return undef unless $n;
        $answer .= $chunk;
    }
    $answer =~ s/(?:^|\n)> \z/\n/;
    return $answer;
}

# one sample: [signature, share a, share b]; reconnects after a reload
sub sample {
    for my $attempt (1 .. 3) {
        connect_cli() unless $sock;
        if (print $sock "show servers state $o{backend}\n") {
            my $answer = read_answer();
            return parse($answer) if defined $answer && $answer =~ /^# be_id/m;
        }
        close $sock if $sock;
        undef $sock;
    }
    die "agent_bench_router.pl: no answer from $o{socket}\n";
}

sub parse {
    my ($text) = @_;
    my (@servers, %weight);
    $weight{a} = $weight{b} = 0;
    for my $line (split /\n/, $text) {
        next if $line =~ /^#/;
        my @f = split / /, $line;
        next unless @f >= 19 && $f[1] eq $o{backend};
        my ($name, $op, $admin, $uweight, $port) = @f[3, 5, 6, 7, 18];
        push @servers, "$name:$port:$op:$admin:$uweight";
        my $serving = $op == 2 && ($admin & ~0x04) == 0;
        $weight{substr($name, 0, 1)} += $uweight if $serving;
    }
    my $total = $weight{a} + $weight{b};
    my @share = map { $total ? 100 * $weight{$_} / $total : 0 } qw(a b);
    return [join(',', @servers), @share];
}

# ---- polling ----

my ($last, $last_t, $samples, $first_t, $max_gap, $changes_fh) = (undef, 0, 0, 0, 0, undef);

# poll_once([untimed]): an untimed poll (saves: between a save's change and the
# next save, where reading state.json may delay it) does not count toward the
# largest gap between polls
sub poll_once {
    my ($untimed) = @_;
    my $s = sample();
    my $t = time;
    $samples++;
    $first_t ||= $t;
    $max_gap = $t - $last_t if !$untimed && $last_t && $t - $last_t > $max_gap;
    my $changed = !defined $last || $s->[0] ne $last->[0];
    if ($changed && $changes_fh) {
        printf $changes_fh "change %.6f %.6f %.2f %.2f %s\n", $t, $last_t || $t, $s->[1], $s->[2],
            $s->[0];
    }
    my $previous = $last;
    ($last, $last_t) = ($s, $t);
    return ($changed && defined $previous, $t, $s);
}

sub pause_poll { sleep($o{'interval-ms'} / 1000) if $o{'interval-ms'} > 0 }

sub finish_changes {
    my $duration = $last_t - $first_t;
    printf $changes_fh "samples %d %.3f %.3f %.3f\n", $samples, $duration,
        $samples > 1 ? 1000 * $duration / ($samples - 1) : 0, 1000 * $max_gap;
    close $changes_fh;
}

sub open_out {
    my ($path) = @_;
    open(my $fh, '>', $path) or die "agent_bench_router.pl: $path: $!\n";
    $fh->autoflush(1);
    return $fh;
}

# traffic steps in state.json: keys are sorted, so each event reads
# {"detail":"canary traffic N%","event":"traffic_shifted","time_ms":T}
sub collect_history {
    my ($state, $path) = @_;
    my %seen;
    if (open(my $in, '<', $path)) {
        while (<$in>) { $seen{$_} = 1 }
        close $in;
    }
    open(my $sf, '<', $state) or return;
    my $text = do { local $/; <$sf> };
    close $sf;
    open(my $out, '>>', $path) or die "agent_bench_router.pl: $path: $!\n";
    while ($text =~ /\{"detail":"canary traffic (\d+)%","event":"traffic_shifted","time_ms":(\d+)\}/g) {
        my $line = "$1 $2\n";
        print $out $line unless $seen{$line}++;
    }
    close $out;
}

if ($mode eq 'history') {
    collect_history($o{state}, $o{decisions});
    exit 0;
}

if ($mode eq 'watch') {
    $changes_fh = open_out($o{out});
    until (-e $o{'stop-file'}) {
        poll_once();
        pause_poll();
    }
    finish_changes();
    exit 0;
}

if ($mode eq 'saves') {
    $changes_fh = open_out($o{changes});
    my $out = open_out($o{out});
    open(my $tf, '<', $o{template}) or die "agent_bench_router.pl: $o{template}: $!\n";
    my $template = do { local $/; <$tf> };
    close $tf;
    my (undef, undef, $s0) = poll_once();
    my $canary = $s0->[1] < $s0->[2] ? 1 : 2;    # index of the canary side's share
    my $aside = $o{aside} // die "agent_bench_router.pl: saves needs --aside\n";
    for my $percent ($o{from} .. $o{to}) {
        (my $text = $template) =~ s/\@PERCENT\@/$percent/g;
        open(my $fh, '>', $aside) or die "agent_bench_router.pl: $aside: $!\n";
        print $fh $text;
        close $fh or die "agent_bench_router.pl: $aside: $!\n";
        my $saved = time;
        rename($aside, $o{target}) or die "agent_bench_router.pl: rename: $!\n";
        my ($first, $matched) = ('-', '-');
        while (time - $saved < $o{'timeout-s'}) {
            my ($changed, $t, $s) = poll_once();
            $first = sprintf('%.6f', $t) if $changed && $first eq '-';
            if ($first ne '-' && abs($s->[$canary] - $percent) <= 1.0) {
                $matched = sprintf('%.6f', $t);
                last;
            }
            pause_poll();
        }
        printf $out "save %d %.6f %s %s\n", $percent, $saved, $first, $matched;
        collect_history($o{state}, $o{decisions}) if $o{state} && $o{decisions};
        my $until = time + $o{'gap-ms'} / 1000;
        while (time < $until) {
            poll_once(1);
            pause_poll();
        }
        poll_once(1);    # the next save starts from a fresh sample
    }
    finish_changes();
    exit 0;
}

if ($mode eq 'match') {
    my @changes;
    open(my $cf, '<', $o{changes}) or die "agent_bench_router.pl: $o{changes}: $!\n";
    while (<$cf>) {
        push @changes, [$1, $2, $3] if /^change (\S+) \S+ (\S+) (\S+) /;
    }
    close $cf;
    my %logged;    # "N" -> [times] of the log's traffic_shifted lines
    if ($o{log} && open(my $lf, '<', $o{log})) {
        while (my $line = <$lf>) {
            next unless $line =~ /"time":"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)\.(\d+)Z"/;
            my $t = timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000;
            push @{$logged{$1}}, $t
                if $line =~ /"message":"\Q$o{service}\E: [a-z_]+ \(traffic_shifted: canary traffic (\d+)%\)/;
        }
        close $lf;
    }
    open(my $df, '<', $o{decisions}) or die "agent_bench_router.pl: $o{decisions}: $!\n";
    my @decisions = sort { $a->[1] <=> $b->[1] } map { [split] } grep { /^\d+ \d+$/ } <$df>;
    close $df;
    for my $d (@decisions) {
        my ($percent, $t) = ($d->[0], $d->[1] / 1000);
        next if $t < $o{since};
        my ($first, $matched) = ('-', '-');
        for my $c (@changes) {
            next if $c->[0] < $t;
            $first = $c->[0] if $first eq '-';
            if (abs($c->[1] - $percent) <= 1.0 || abs($c->[2] - $percent) <= 1.0) {
                $matched = $c->[0];
                last;
            }
        }
        my $in_log = grep { abs($_ - $t) <= 0.005 } @{$logged{$percent} // []};
        printf "decision %d %.3f %s %s %d\n", $percent, $t, $first, $matched, $in_log ? 1 : 0;
    }
    exit 0;
}

die "usage: agent_bench_router.pl watch|saves|match OPTIONS (see the top of the file)\n";
