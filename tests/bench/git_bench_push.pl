#!/usr/bin/perl
# git_bench_push.pl - time from `git push` to the first change of HAProxy's
# traffic configuration, over many pushes. A helper of tests/bench/git_bench.sh.
#
#   git_bench_push.pl --socket STATE/haproxy/admin.sock --backend svc.app
#       --clone DIR --file services/svc.yaml --down SPEC --up SPEC
#       --replicas-down 2 --replicas-up 3 --changes N --label NAME
#       [--interval-ms 2] [--settle-ms 300] [--timeout-s 30] [--samples FILE]
#
# The agent runs on the clone's origin with the --up spec (replicas-up ready).
# Change i (1..N) copies --down (odd i) or --up (even i) over FILE in the
# clone and commits it (untimed). Then, with the router's state S0 read just
# before, it notes the time T0 and starts `git push origin HEAD:main` in a
# child, and reads HAProxy's `show servers state` on the admin socket in a
# loop (a new connection per read, --interval-ms of sleep between reads)
# until the state differs from S0: the first router change, at time T1 (the
# moment the read that saw it was sent). The figure is T1 - T0; it includes
# the push itself. The change happened between the read before and that one:
# the gap between the two is the sampling resolution, reported too.
#
# The state compared is, for every server of every backend: address, port,
# operational state, administrative state and weight (the columns rolld
# sets through the runtime API; no health-check counters, no timers).
#
# Before each change the router must have settled: replicas-up (or -down)
# servers ready in --backend, none draining, and no change for --settle-ms.
#
# Scaling down (3 -> 2) the first router change is the drain of one replica:
# that measures noticing the push, fetching, loading, planning and applying.
# Scaling up (2 -> 3) the new replica enters the router only once it has
# started and passed its first health check, so that figure includes both.
#
# Prints a line per change and, at the end, one RESULT line per direction:
#   RESULT label direction n p50 p90 p99 min max mean timeouts gap_mean gap_max push_mean
#          after_p50 after_p99
# (milliseconds; percentiles by nearest rank: with n = 50, p99 is the maximum;
# after_*: from the moment `git push` exited, which is after the ref moved,
# so it can be below zero).
use strict;
use warnings;
use Getopt::Long;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h ceil);
use Time::HiRes qw(time usleep);

my %o = (
    backend => 'svc.app', file => 'services/svc.yaml', 'replicas-down' => 2,
    'replicas-up' => 3, changes => 100, label => 'run', 'interval-ms' => 2,
    'settle-ms' => 300, 'timeout-s' => 30,
);
GetOptions(\%o, 'socket=s', 'backend=s', 'clone=s', 'file=s', 'down=s', 'up=s',
    'replicas-down=i', 'replicas-up=i', 'changes=i', 'label=s', 'interval-ms=f',
    'settle-ms=i', 'timeout-s=i', 'samples=s') or die "git_bench_push: bad options\n";
for my $k (qw(socket clone down up)) {
    die "git_bench_push: --$k is required\n" unless defined $o{$k};
}

sub slurp {
    my ($path) = @_;
    open(my $fh, '<', $path) or die "git_bench_push: $path: $!\n";
    local $/;
    return <$fh>;
}
my %text = (down => slurp($o{down}), up => slurp($o{up}));
my %want = (down => $o{'replicas-down'}, up => $o{'replicas-up'});

# ---- the router's state ----

my $polls = 0;

# (digest, ready, draining) of `show servers state`; digest undef when the
# socket does not answer
sub router_state {
    $polls++;
    my $s = IO::Socket::UNIX->new(Peer => $o{socket}) or return (undef, 0, 0);
    print $s "show servers state\n";
    shutdown($s, 1);
    local $/;
    my $answer = <$s> // '';
    close($s);
    my (@rows, $ready, $drain);
    $ready = $drain = 0;
    for my $line (split /\n/, $answer) {
        next if $line =~ /^#/ || $line !~ /\S/;
        my @f = split ' ', $line;
        next if @f < 19 || $f[0] !~ /^\d+$/;
        # be_name srv_name srv_addr op_state admin_state uweight port
        push @rows, join(',', @f[1, 3, 4, 5, 6, 7, 18]);
        next unless $f[1] eq $o{backend};
        if ($f[6] & 0x18) {
            $drain++;
        } elsif ($f[5] == 2 && !($f[6] & 0x03)) {
            $ready++;
        }
    }
    return (undef, 0, 0) unless @rows;
    return (join(';', @rows), $ready, $drain);
}

# waits until `want` servers are ready, none draining, and nothing changed for
# settle-ms; dies after 120 s
sub settle {
    my ($want) = @_;
    my $deadline = time + 120;
    my ($last, $since) = ('', time);
    while (time < $deadline) {
        my ($digest, $ready, $drain) = router_state();
        my $t = time;
        if (!defined $digest || $digest ne $last) {
            ($last, $since) = ($digest // '', $t);
        } elsif ($ready == $want && $drain == 0 && ($t - $since) * 1000 >= $o{'settle-ms'}) {
            return;
        }
        usleep(20_000);
    }
    my (undef, $ready, $drain) = router_state();
    die "git_bench_push: the router did not settle at $want ready servers in 120 s "
      . "($ready ready, $drain draining)\n";
}

# ---- git ----

sub run_git {
    my @cmd = ('git', '-C', $o{clone}, @_);
    system(@cmd) == 0 or die "git_bench_push: @cmd failed\n";
}

sub start_push {
    my $pid = fork() // die "git_bench_push: fork: $!\n";
    if ($pid == 0) {
        open(STDOUT, '>', '/dev/null');
        exec('git', '-C', $o{clone}, 'push', '-q', 'origin', 'HEAD:main');
        exit 127;
    }
    return $pid;
}

# ---- the runs ----

my $samples_fh;
if ($o{samples}) {
    open($samples_fh, '>', $o{samples}) or die "git_bench_push: $o{samples}: $!\n";
    print $samples_fh "# label change direction latency_ms gap_ms push_ms ready_after draining_after polls\n";
}

my (%latency, %timeouts, %gaps, %push, %after);
my $interval_us = $o{'interval-ms'} * 1000;
settle($want{up});
for my $i (1 .. $o{changes}) {
    my $dir = $i % 2 ? 'down' : 'up';
    my $path = "$o{clone}/$o{file}";
    open(my $fh, '>', "$path.new") or die "git_bench_push: $path.new: $!\n";
    print $fh $text{$dir};
    close($fh);
    rename("$path.new", $path) or die "git_bench_push: $path: $!\n";
    run_git('add', $o{file});
    run_git('commit', '-q', '-m', "bench $o{label} $i: $dir to $want{$dir} replicas");

    my ($s0) = router_state();
    die "git_bench_push: the router does not answer on $o{socket}\n" unless defined $s0;
    my $t0 = time;
    my $pid = start_push();
    my ($push_done, $prev, $seen, $ready, $drain) = (undef, $t0, undef, 0, 0);
    my $n = 0;
    while (time - $t0 < $o{'timeout-s'}) {
        my $t = time;
        my ($digest, $r, $d) = router_state();
        $n++;
        if (!defined $push_done && waitpid($pid, WNOHANG) == $pid) {
            die "git_bench_push: git push failed (status $?)\n" if $?;
            $push_done = time;
        }
        if (defined $digest && $digest ne $s0) {
            ($seen, $ready, $drain) = ($t, $r, $d);
            last;
        }
        $prev = $t;
        usleep($interval_us);
    }
    if (!defined $push_done) {
        waitpid($pid, 0);
        die "git_bench_push: git push failed (status $?)\n" if $?;
        $push_done = time;
    }
    my $push_ms = ($push_done - $t0) * 1000;
    push @{$push{$dir}}, $push_ms;
    if (defined $seen) {
        my $ms = ($seen - $t0) * 1000;
        my $gap = ($seen - $prev) * 1000;
        push @{$latency{$dir}}, $ms;
        push @{$gaps{$dir}}, $gap;
        push @{$after{$dir}}, $ms - $push_ms;
        printf "%s %3d %-4s push -> first router change %8.1f ms (resolution %.1f ms, push %.0f ms, %d ready, %d draining)\n",
            $o{label}, $i, $dir, $ms, $gap, $push_ms, $ready, $drain;
        printf $samples_fh "%s %d %s %.2f %.2f %.1f %d %d %d\n", $o{label}, $i, $dir, $ms, $gap,
            $push_ms, $ready, $drain, $n if $samples_fh;
    } else {
        $timeouts{$dir}++;
        printf "%s %3d %-4s no router change within %d s\n", $o{label}, $i, $dir, $o{'timeout-s'};
        printf $samples_fh "%s %d %s timeout - %.1f - - %d\n", $o{label}, $i, $dir, $push_ms, $n
            if $samples_fh;
    }
    settle($want{$dir});
}
close($samples_fh) if $samples_fh;

sub pct {
    my ($sorted, $q) = @_;
    my $k = ceil($q * @$sorted) - 1;
    $k = 0 if $k < 0;
    return $sorted->[$k];
}
sub mean { my $s = 0; $s += $_ for @_; return @_ ? $s / @_ : 0 }
sub max { my $m = $_[0]; for (@_) { $m = $_ if $_ > $m } return $m }

for my $dir (qw(down up)) {
    my @v = sort { $a <=> $b } @{$latency{$dir} // []};
    my @g = @{$gaps{$dir} // []};
    if (!@v) {
        printf "RESULT %s %s 0 - - - - - - %d - - - - -\n", $o{label}, $dir, $timeouts{$dir} // 0;
        next;
    }
    my @a = sort { $a <=> $b } @{$after{$dir}};
    printf "RESULT %s %s %d %.1f %.1f %.1f %.1f %.1f %.1f %d %.2f %.2f %.1f %.1f %.1f\n", $o{label},
        $dir, scalar @v, pct(\@v, 0.5), pct(\@v, 0.9), pct(\@v, 0.99), $v[0], $v[-1], mean(@v),
        $timeouts{$dir} // 0, mean(@g), max(@g), mean(@{$push{$dir}}), pct(\@a, 0.5), pct(\@a, 0.99);
}
