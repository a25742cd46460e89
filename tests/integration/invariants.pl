#!/usr/bin/env perl
# invariants.pl - samples the router and the replicas of one rolld state dir
# every --interval-ms (50 ms) while a test runs and checks, at every sample:
#
#   bound   model-server processes alive for the state dir (starting, ready and
#           draining alike; zombies excluded), per version_name <= --max-per-version,
#           all versions together <= --max-total (during rolling_back
#           --max-total-rollback, once the count first fits it)
#   state   state.json: traffic(canary) <= capacity(canary),
#           100 - traffic <= capacity(primary) (except in an at-once rollback),
#           capacity(primary) + capacity(canary) <= 100 + --surge (during
#           rolling_back 100 + --surge-rollback, once the sum first fits it)
#   dead    a server that takes traffic (any backend of the service: running,
#           not in maintenance or drain, weight > 0) has a live replica process
#           of the state dir listening on its port
#   health  (--health) ... and that replica answers 200 on its health path
#           (each asked right after reading the router; a failure counts when
#           the router, read again after, still sends that server traffic)
#   share   (--share) while two versions take traffic, in the split backend
#           the share of the weights of each version_name
#           <= 100 * (its servers taking traffic) / --replicas + 1
#           (traffic(v) <= capacity(v), in replicas)
#   empty   while there is a primary, some server of the split backend takes traffic
#   gpu     (--gpus LIST --gpu-fraction F) every replica has CUDA_VISIBLE_DEVICES,
#           only devices of LIST, and no device holds more than 1/F replicas
#
# Each sample is one JSON line in --out (t: ms since the start, at: ms since the epoch); --milestones "SHARE:NAME=N,NAME=N;..."
# are matched in order (the canary's share within 2 points, the given process
# counts exactly; one marked ~ may be skipped when the next one matches first)
# and reported with the time of their first match. The summary,
# one JSON object, goes to --summary when --stop-file appears or on SIGTERM.
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::UNIX;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(ceil);
use Time::HiRes qw(time sleep);

my %o = (service => 'svc', 'interval-ms' => 50, 'max-per-version' => 1_000_000,
         'max-total' => 1_000_000, surge => 0, replicas => 0, 'health-path' => '/healthz',
         'gpu-fraction' => 0, gpus => '', milestones => '', canary => '');
GetOptions(\%o, 'state=s', 'service=s', 'out=s', 'summary=s', 'stop-file=s', 'interval-ms=i',
           'max-per-version=i', 'max-total=i', 'max-total-rollback=i', 'surge=i',
           'surge-rollback=i', 'replicas=i', 'health!', 'share!', 'health-path=s', 'gpus=s',
           'gpu-fraction=f', 'milestones=s', 'canary=s') or die "invariants.pl: bad options\n";
die "invariants.pl: --state, --out, --summary and --stop-file are needed\n"
    unless $o{state} && $o{out} && $o{summary} && $o{'stop-file'};

my $state_dir = $o{state};
my $marker = "ROLLD_STATE_DIR=$state_dir";
my %gpu_ok = map { $_ => 1 } grep { length } split /,/, $o{gpus};
my $gpu_max = $o{'gpu-fraction'} > 0 ? int(1 / $o{'gpu-fraction'} + 1e-9) : 0;
my $json = JSON::PP->new->canonical;

# milestones: [{share => N, counts => {name => n}}]
my @milestones;
for my $m (grep { length } split /;/, $o{milestones}) {
    my $optional = $m =~ s/^~//;
    my ($share, @counts) = split /[:,]/, $m;
    my %counts = map { split /=/ } @counts;
    push @milestones, {share => $share, counts => \%counts, text => ($optional ? "~" : "") . $m,
                       optional => $optional};
}

sub milestone_matches {
    my ($m, $share, $alive) = @_;
    return 0 unless abs($share - $m->{share}) <= 2;
    for my $v (keys %{$m->{counts}}) {
        return 0 unless ($alive->{$v} // 0) == $m->{counts}{$v};
    }
    return 1;
}
my $next_milestone = 0;

my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };

open(my $out, '>', $o{out}) or die "invariants.pl: $o{out}: $!\n";
$out->autoflush(1);

my $t0 = time;
my (%violations, @examples, %max_alive, $max_total, %max_gpu, $samples, %cost);
$max_total = 0;
$samples = 0;
my (%seen_phase, @phases);
my ($total_fits_rb, $sum_fits_rb) = (0, 0);

sub violation {
    my ($kind, $text) = @_;
    $violations{$kind}++;
    push @examples, sprintf('+%d ms %s: %s', (time - $t0) * 1000, $kind, $text)
        if @examples < 40 && $violations{$kind} <= 8;
}

sub admin_command {
    my ($command) = @_;
    my $s = IO::Socket::UNIX->new(Peer => "$state_dir/haproxy/admin.sock") or return undef;
    print $s "$command\n";
    shutdown($s, 1);
    local $/;
    my $answer = <$s>;
    close $s;
    return $answer;
}

sub replicas {
    my %r;
    opendir(my $d, '/proc') or return \%r;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        open(my $f, '<', "/proc/$pid/environ") or next;
        local $/;
        my $env = <$f>;
        close $f;
        next unless defined $env;
        next unless index($env, "\0$marker\0") >= 0 || index($env, "$marker\0") == 0;
        open(my $s, '<', "/proc/$pid/stat") or next;
        my $stat = <$s>;
        close $s;
        next unless defined $stat && $stat =~ /\)\s+(\S)/ && $1 ne 'Z' && $1 ne 'X';
        my %e = map { /^([^=]*)=(.*)$/s ? ($1, $2) : () } split /\0/, $env;
        $r{$pid} = {pid => $pid, version => $e{ROLLD_VERSION_NAME} // '?', port => $e{ROLLD_PORT} // 0,
                    gpus => $e{CUDA_VISIBLE_DEVICES}, index => $e{ROLLD_REPLICA}};
    }
    closedir $d;
    return \%r;
}

my ($state_key, $state_doc) = ('', undef);
sub service_state {
    my @st = Time::HiRes::stat("$state_dir/state.json") or return undef;
    my $key = join ':', $st[1], $st[7], $st[9];
    # a save writes aside and renames: a new inode, size or mtime
    if ($key ne $state_key) {
        open(my $f, '<', "$state_dir/state.json") or return $state_doc;
        local $/;
        my $text = <$f>;
        close $f;
        # keys are sorted: "services" comes last, after the long "replicas";
        # decoding only that part keeps a sample cheap
        my $at = rindex($text, '"services":');
        my $doc = $at >= 0 ? eval { $json->decode(substr($text, $at + 11, -1)) } : undef;
        $doc = eval { $json->decode($text)->{services} } if !$doc;
        if ($doc) {
            $state_doc = $doc->{$o{service}};
            $state_key = $key;
        }
    }
    return $state_doc;
}

sub healthy {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 1) or return 0;
    $s->timeout(1);
    print $s "GET $o{'health-path'} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    my $line = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 1;
        $line = <$s> // '';
        alarm 0;
    };
    close $s;
    return $line =~ m{^HTTP/1\.\d 200 } ? 1 : 0;
}

# servers of the service that take traffic (running, not in maintenance or
# drain, weight > 0): [{backend, server, port, weight}]
sub taking_traffic {
    my ($servers) = @_;
    my @out;
    for my $line (split /\n/, $servers // '') {
        next if $line =~ /^#/ || $line !~ /\S/;
        my @f = split ' ', $line;
        next unless @f >= 19;
        my ($backend, $server, $op, $admin, $uweight, $port) = @f[1, 3, 5, 6, 7, 18];
        next unless index($backend, "$o{service}.") == 0;
        # admin bits: 0x01/0x02/0x20/0x40 maintenance, 0x08/0x10 drain; 0x04
        # only says the configuration started it disabled
        next unless $op == 2 && ($admin & 0x7b) == 0 && $uweight > 0;
        push @out, {backend => $backend, server => $server, port => $port, weight => $uweight};
    }
    return \@out;
}

sub side_name {
    my ($doc, $side) = @_;
    return undef unless defined $side && $side >= 0 && $doc->{sides}[$side];
    my $d = $doc->{sides}[$side]{doc};
    return $d->{version_name} // $doc->{sides}[$side]{version};
}

while (!$stop && !-e $o{'stop-file'}) {
    my $started = time;
    $samples++;
    # the router first, at once the health of what it sends traffic to, then
    # the processes; a server found dead or unhealthy counts only if a second
    # look at the router, taken after, still sends it traffic (so a server
    # the agent drained meanwhile, before stopping it, is not held against it)
    my $t_router = time;
    my $routing = taking_traffic(admin_command('show servers state'));
    $cost{router} += time - $t_router;
    my %health;
    if ($o{health}) {
        $health{$_->{port}} //= healthy($_->{port}) for @$routing;
    }
    my $t_procs = time;
    my $procs = replicas();
    $cost{procs} += time - $t_procs;
    my %by_port = map { $procs->{$_}{port} => $procs->{$_} } keys %$procs;
    my %suspect;
    for my $r (@$routing) {
        $suspect{$r->{port}} = 1 if !$by_port{$r->{port}} || ($o{health} && !$health{$r->{port}});
    }
    my %confirmed;
    if (%suspect) {
        my $again = taking_traffic(admin_command('show servers state'));
        for my $r (@$again) {
            $confirmed{"$r->{backend}/$r->{server}/$r->{port}"} = 1 if $suspect{$r->{port}};
        }
    }
    my $t_state = time;
    my $doc = service_state();
    $cost{state} += time - $t_state;

    my %alive;
    $alive{$_->{version}}++ for values %$procs;
    my $total = 0;
    $total += $_ for values %alive;
    my $phase = $doc ? $doc->{phase} : '';
    if (!$seen_phase{$phase}++) { push @phases, $phase }
    my $rolling_back = $phase eq 'rolling_back';

    # bound
    for my $v (sort keys %alive) {
        $max_alive{$v} = $alive{$v} if ($max_alive{$v} // 0) < $alive{$v};
        violation('bound', "$alive{$v} replicas of $v alive > $o{'max-per-version'}")
            if $alive{$v} > $o{'max-per-version'};
    }
    $max_total = $total if $total > $max_total;
    my $total_bound = $o{'max-total'};
    if ($rolling_back && defined $o{'max-total-rollback'}) {
        $total_fits_rb = 1 if $total <= $o{'max-total-rollback'};
        $total_bound = $o{'max-total-rollback'} if $total_fits_rb;
    }
    violation('bound', "$total replicas alive > $total_bound (" . join(' ', map {"$_=$alive{$_}"} sort keys %alive) . ")")
        if $total > $total_bound;

    # state
    my ($traffic, $pcap, $ccap, $pname, $cname) = (0, undef, undef, undef, undef);
    if ($doc) {
        $traffic = $doc->{traffic} // 0;
        $pname = side_name($doc, $doc->{primary});
        $cname = side_name($doc, $doc->{canary});
        $pcap = $doc->{sides}[$doc->{primary}]{capacity} if defined $pname;
        $ccap = $doc->{sides}[$doc->{canary}]{capacity} if defined $cname;
        if (defined $pname && defined $cname) {
            violation('state', "traffic $traffic > canary capacity $ccap ($phase)") if $traffic > $ccap;
            violation('state', "primary traffic " . (100 - $traffic) . " > primary capacity $pcap ($phase)")
                if 100 - $traffic > $pcap && !$doc->{rollback_immediate};
            if ($o{surge} > 0) {
                my $bound = 100 + $o{surge};
                if ($rolling_back && defined $o{'surge-rollback'}) {
                    $sum_fits_rb = 1 if $pcap + $ccap <= 100 + $o{'surge-rollback'};
                    $bound = 100 + $o{'surge-rollback'} if $sum_fits_rb;
                }
                violation('state', "capacity $pcap + $ccap > $bound ($phase)") if $pcap + $ccap > $bound;
            }
        }
    }

    # router: servers that take traffic
    my (%weight, %routed);
    for my $r (@$routing) {
        my ($backend, $server, $port, $uweight) = @$r{qw(backend server port weight)};
        my $p = $by_port{$port};
        my $still = $confirmed{"$backend/$server/$port"};
        if (!$p) {
            violation('dead', "$backend/$server (port $port, weight $uweight) takes traffic, no replica listens there")
                if $still;
            next;
        }
        violation('health', "$backend/$server (port $port, $p->{version} pid $p->{pid}) takes traffic but is not healthy")
            if $o{health} && !$health{$port} && $still;
        # the split backend has one dot, the pinned ones two: svc.app, svc.app.0
        if (($backend =~ tr/.//) == 1) {
            $weight{$p->{version}} += $uweight;
            $routed{$p->{version}}++;
        }
    }
    my $weights = 0;
    $weights += $_ for values %weight;
    violation('empty', "no server of the split backend takes traffic ($phase)")
        if $weights == 0 && defined $pname;
    my %share = map { $_ => ($weights ? 100 * $weight{$_} / $weights : 0) } keys %weight;
    # with one version only in the router there is nothing to split
    if ($o{share} && $o{replicas} > 0 && keys(%weight) > 1) {
        for my $v (sort keys %share) {
            my $capacity = 100 * $routed{$v} / $o{replicas};
            violation('share', sprintf('%s takes %.1f%% of the traffic on %d ready servers (%.1f%% of capacity)',
                                       $v, $share{$v}, $routed{$v}, $capacity))
                if $share{$v} > $capacity + 1;
        }
    }

    # GPUs
    my %per_device;
    if ($gpu_max) {
        for my $p (values %$procs) {
            if (!defined $p->{gpus} || $p->{gpus} eq '') {
                violation('gpu', "replica $p->{version} pid $p->{pid} has no CUDA_VISIBLE_DEVICES");
                next;
            }
            for my $d (split /,/, $p->{gpus}) {
                violation('gpu', "replica $p->{version} pid $p->{pid} got device '$d', not in the inventory")
                    unless $gpu_ok{$d};
                $per_device{$d}++;
            }
        }
        for my $d (sort keys %per_device) {
            $max_gpu{$d} = $per_device{$d} if ($max_gpu{$d} // 0) < $per_device{$d};
            violation('gpu', "device $d holds $per_device{$d} replicas > $gpu_max")
                if $per_device{$d} > $gpu_max;
        }
    }

    my $ms = int((time - $t0) * 1000);
    my $canary_share = $o{canary} ? ($share{$o{canary}} // 0) : 0;
    # a milestone marked ~ may go by between two samples: it is skipped when
    # the one after it matches first
    for my $k ($next_milestone .. ($next_milestone + 1)) {
        last if $k >= @milestones;
        last if $k > $next_milestone && !$milestones[$next_milestone]{optional};
        if (milestone_matches($milestones[$k], $canary_share, \%alive)) {
            $milestones[$_]{skipped} = 1 for $next_milestone .. $k - 1;
            $milestones[$k]{at_ms} = $ms;
            $next_milestone = $k + 1;
            last;
        }
    }
    print $out $json->encode({t => $ms, at => int(time * 1000), phase => $phase, traffic => $traffic, pcap => $pcap,
                              ccap => $ccap, primary => $pname, canary => $cname,
                              alive => \%alive, routed => \%routed,
                              share => {map { $_ => 0 + sprintf('%.1f', $share{$_}) } keys %share},
                              ($gpu_max ? (gpu => \%per_device) : ())}), "\n";
    $cost{all} += time - $started;
    my $left = $o{'interval-ms'} / 1000 - (time - $started);
    sleep($left) if $left > 0;
}

my $duration = time - $t0;
my $summary = {
    samples => $samples,
    duration_ms => int($duration * 1000),
    interval_ms => $samples ? int($duration * 1000 / $samples) : 0,
    violations => \%violations,
    examples => \@examples,
    max_alive => \%max_alive,
    max_total => $max_total,
    max_gpu => \%max_gpu,
    phases => \@phases,
    milestones => [map { {milestone => $_->{text}, at_ms => $_->{at_ms},
                          ($_->{skipped} ? (skipped => JSON::PP::true) : ())} } @milestones],
    milestones_matched => $next_milestone,
    # ms per sample spent reading the router, the processes, state.json, in all
    cost_ms => {map { $_ => 0 + sprintf('%.1f', $samples ? 1000 * $cost{$_} / $samples : 0) } keys %cost},
};
open(my $s, '>', "$o{summary}.tmp") or die "invariants.pl: $o{summary}: $!\n";
print $s $json->encode($summary), "\n";
close $s;
rename("$o{summary}.tmp", $o{summary});
