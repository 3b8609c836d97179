using HaMesh.Protocol.V1;
using HaMesh.Shared.Drbd;

namespace HaMesh.Shared.Tests.Drbd;

public sealed class DrbdadmOutputParserTests
{
    [Theory]
    [InlineData("84-role-after-up.txt", DrbdRole.Secondary, DrbdRole.Unknown)]
    [InlineData("84-role-primary.txt", DrbdRole.Primary, DrbdRole.Unknown)]
    public void Role_84Captures_LocalAndPeer(string capture, DrbdRole local, DrbdRole peer)
    {
        Assert.Equal((local, peer), DrbdadmOutputParser.Role(Fixtures.Capture(capture).Output));
    }

    [Fact]
    public void Role_Drbd9LocalOnly() => Assert.Equal((DrbdRole.Primary, DrbdRole.Unknown), DrbdadmOutputParser.Role("Primary\n"));

    [Theory]
    [InlineData("84-dstate-after-up.txt", DiskState.Inconsistent, DiskState.Dunknown)]
    [InlineData("84-dstate-primary.txt", DiskState.UpToDate, DiskState.Dunknown)]
    [InlineData("84-dstate-outdated.txt", DiskState.Outdated, DiskState.Dunknown)]
    public void DiskStates_84Captures(string capture, DiskState local, DiskState peer)
    {
        Assert.Equal((local, peer), DrbdadmOutputParser.DiskStates(Fixtures.Capture(capture).Output));
    }

    [Theory]
    [InlineData("84-cstate-after-up.txt", ConnectionState.WfConnection)]
    [InlineData("84-cstate-disconnected.txt", ConnectionState.StandAlone)]
    public void ConnectionState84_Captures(string capture, ConnectionState expected)
    {
        Assert.Equal(expected, DrbdadmOutputParser.ConnectionState84(Fixtures.Capture(capture).Output)!.Value.Connection);
    }

    [Theory]
    [InlineData("84-primary-inconsistent.txt", 17, -2, "Need access to UpToDate data")]
    [InlineData("84-primary-outdated.txt", 17, -2, "Need access to UpToDate data")]
    [InlineData("84-secondary-while-mounted.txt", 11, -12, "Device is held open by someone")]
    public void Error_StateChangeRefusals_CodeAndText(string capture, int exit, int code, string text)
    {
        var (output, exitCode) = Fixtures.Capture(capture);
        Assert.Equal(exit, exitCode);
        var error = DrbdadmOutputParser.Error(output, exitCode)!;
        Assert.Equal(code, error.StateChangeCode);
        Assert.Equal(text, error.Text);
        Assert.Equal(exit, error.ExitCode);
    }

    [Fact]
    public void Error_MinorNotAllocated_FailureCodeAndUnknownResource()
    {
        var (output, exit) = Fixtures.Capture("84-role-after-down.txt");
        var error = DrbdadmOutputParser.Error(output, exit)!;
        Assert.Equal(127, error.FailureCode);
        Assert.Equal("Device minor not allocated", error.Text);
        Assert.True(DrbdadmOutputParser.IsUnknownResource(output));
    }

    [Fact]
    public void IsUnknownResource_NotDefinedInConfig()
    {
        var (output, exit) = Fixtures.Capture("84-unknown-resource.txt");
        Assert.Equal(1, exit);
        Assert.True(DrbdadmOutputParser.IsUnknownResource(output));
        Assert.True(DrbdadmOutputParser.IsUnknownResource("r9: No such resource"));
        Assert.False(DrbdadmOutputParser.IsUnknownResource("0: State change failed: (-2) Need access to UpToDate data"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n")]
    [InlineData("Frobnicated/Gone")]
    public void Queries_Garbage_Null(string output)
    {
        Assert.Null(DrbdadmOutputParser.Role(output));
        Assert.Null(DrbdadmOutputParser.DiskStates(output));
        Assert.Null(DrbdadmOutputParser.ConnectionState84(output));
    }
}
